"""Reading and writing the photos people really have, without crashing or leaving half-written files.

Reading (`read_image`):
  * Any path Python can open (non-ASCII included): bytes are read by Python, never by `cv2.imread(path)`.
  * The size is read from the header (Pillow's `Image.open` parses only the header) and checked against
    one pixel limit of ours *before* anything is decoded, so a 1 MB PNG that claims 20000x20000 costs
    nothing. Pillow's own bomb check is held at our limit while it decodes, and its
    `DecompressionBombWarning` is turned into an error.
  * Pillow decodes, except 16-bit colour PNG/TIFF, which Pillow would cut to 8 bits: those go through
    `cv2.imdecode(IMREAD_UNCHANGED)` (also after the header check; OpenCV's own
    OPENCV_IO_MAX_IMAGE_PIXELS error is caught too). Pillow's JPEG decode is bit-identical to
    `cv2.imread` on the official test photos, so results match the official scripts.
  * EXIF orientation is applied, so JPEGs from phones come out upright (as `cv2.imread` does).
  * A truncated file is an error (Pillow's LOAD_TRUNCATED_IMAGES is never set).
  * Every failure is an `ImageReadError` with one line naming the file; nothing else escapes.

What comes out (`LoadedImage`):
  * `pixels` is always HxWx3 BGR (the face models want 3 channels), uint8 or uint16.
    Gray inputs are replicated into 3 channels and flagged `is_gray`; palette, CMYK, YCbCr, 1-bit...
    are converted to BGR. No colour management: an embedded ICC profile is ignored.
  * `alpha` is HxW with the same dtype as `pixels`, or None. A palette or colour-key transparency
    (PNG tRNS) becomes a real alpha channel.
  * `bit_depth` is 8 or 16. 32-bit integer images whose values fit in 16 bits are read as 16-bit;
    float images are refused.
  * Multi-frame files (GIF, multi-page TIFF) give their first frame.

Writing back (`compose_output`, `write_image`):
  * Models compute in float: `to_float01` / `from_float01` map uint8/uint16 to [0, 1] and back
    (x / 255 or x / 65535; back with clip, x * max, round half to even).
  * `compose_output` turns the restored BGR image back into the input's shape of data: gray as one
    channel (`cv2.COLOR_BGR2GRAY`, as Real-ESRGAN does), alpha re-attached as BGRA (gray + alpha is
    written as BGRA with three equal channels, since OpenCV cannot encode 2-channel images), and the
    input's bit depth.
  * `write_image` encodes in memory, writes a temporary file in the target folder, fsyncs it and
    renames it over the target with `os.replace`: the target is either the old file or the complete
    new one, never a partial file. Formats that hold only 8 bits (JPEG, WebP, BMP) get 16-bit data
    converted to 8-bit (round(x / 257)); JPEG cannot hold transparency, which is an error (pick .png,
    .webp or .tiff; `choose_output_ext` does that for you).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write_bytes

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "choose_output_ext",
    "compose_output",
    "convert_bit_depth",
    "encode_image",
    "from_float01",
    "list_images",
    "read_image",
    "to_float01",
    "write_image",
]

DEFAULT_MAX_PIXELS = 100_000_000

# Extensions `list_images` picks up from a folder (lower case, with the dot).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif",
     ".ppm", ".pgm", ".pnm", ".pbm"}
)


@dataclass(frozen=True)
class _WriteFormat:
    cv2_ext: str  # the extension cv2.imencode understands
    name: str  # for messages
    max_depth: int  # 8 or 16
    alpha: bool


_WRITE_FORMATS = {
    ".png": _WriteFormat(".png", "PNG", 16, True),
    ".tif": _WriteFormat(".tiff", "TIFF", 16, True),
    ".tiff": _WriteFormat(".tiff", "TIFF", 16, True),
    ".jpg": _WriteFormat(".jpg", "JPEG", 8, False),
    ".jpeg": _WriteFormat(".jpg", "JPEG", 8, False),
    ".jpe": _WriteFormat(".jpg", "JPEG", 8, False),
    ".jfif": _WriteFormat(".jpg", "JPEG", 8, False),
    ".webp": _WriteFormat(".webp", "WebP", 8, True),
    ".bmp": _WriteFormat(".bmp", "BMP", 8, True),
}
WRITABLE_EXTENSIONS = frozenset(_WRITE_FORMATS)


class ImageReadError(ValueError):
    """An input image that cannot be used; `str(err)` is one line: "<file>: <what is wrong>"."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageWriteError(ValueError):
    """An output image that cannot be written; `str(err)` is one line: "<file>: <what is wrong>"."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class LoadedImage:
    """A decoded input photo, normalised for the pipeline (see the module docstring).

    pixels: (H, W, 3) BGR, uint8 or uint16, upright (EXIF orientation applied).
    alpha:  (H, W), same dtype as pixels, or None.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    is_gray: bool
    bit_depth: int  # 8 or 16
    path: Path
    format: str  # Pillow's format name: "JPEG", "PNG", "TIFF", ...
    ext: str  # the file's extension, lower case with the dot ("" if none)
    orientation: int = 1  # the EXIF orientation that was applied (1 = none)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]


# ----------------------------------------------------------------------------------------------
# float <-> integer helpers


def _max_value(bit_depth: int) -> int:
    if bit_depth == 8:
        return 255
    if bit_depth == 16:
        return 65535
    raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")


def to_float01(pixels: np.ndarray) -> np.ndarray:
    """uint8 / uint16 -> float32 in [0, 1] (x / 255 or x / 65535). Float input is returned as float32."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    if np.issubdtype(pixels.dtype, np.floating):
        return pixels.astype(np.float32, copy=False)
    raise TypeError(f"expected uint8, uint16 or float pixels, got {pixels.dtype}")


def from_float01(x: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """float in [0, 1] -> uint8 / uint16: clip, scale by 255 or 65535, round (as the official tensor2img)."""
    max_value = _max_value(bit_depth)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    y = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0) * max_value
    return np.rint(y).astype(dtype)


def convert_bit_depth(img: np.ndarray, bit_depth: int) -> np.ndarray:
    """Integer or float image -> uint8 / uint16. 8 -> 16 is x * 257 (255 maps to 65535, exact);
    16 -> 8 is round(x / 257); float is taken as [0, 1]."""
    _max_value(bit_depth)
    if np.issubdtype(img.dtype, np.floating):
        return from_float01(img, bit_depth)
    if img.dtype == np.uint8:
        return img if bit_depth == 8 else img.astype(np.uint16) * np.uint16(257)
    if img.dtype == np.uint16:
        if bit_depth == 16:
            return img
        return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
    raise TypeError(f"expected uint8, uint16 or float pixels, got {img.dtype}")


# ----------------------------------------------------------------------------------------------
# reading

# Pillow keeps its bomb limit in a module global; we set it to ours while we use Pillow, under a
# lock so that two threads reading at once do not restore each other's value. Decodes through
# Pillow are therefore serialised within a process (decoding is a small part of the pipeline).
_PIL_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limit(max_pixels: int | None) -> Iterator[None]:
    """Hold Pillow's bomb limit at `max_pixels` (None: off) and make its warning an error."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _too_big_message(width: int, height: int, max_pixels: int) -> str:
    return (
        f"{width}x{height} = {width * height / 1e6:.1f} MP exceeds the limit of "
        f"{max_pixels / 1e6:.1f} MP (raise it with --max-pixels)"
    )


def _sniff_unsupported(head: bytes) -> str | None:
    """A clearer message than "unrecognised" for formats people do have but we do not read."""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIC/HEIF photos are not supported (convert it to JPEG or PNG first)"
    if head.lstrip()[:5].lower() in (b"<?xml", b"<svg ") or head.lstrip()[:4].lower() == b"<svg":
        return "SVG (vector) images are not supported (export it to PNG first)"
    return None


def _describe_decode_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, EOFError) or "truncat" in text.lower():
        return "file is truncated"
    if isinstance(exc, MemoryError):
        return "not enough memory to decode it"
    return f"cannot decode it (corrupt file?): {text or type(exc).__name__}"


def _tile_rawmode(im: Image.Image) -> str:
    """The raw pixel layout Pillow will decode from ("RGB;16B", ...), or "" if unknown."""
    try:
        args = im.tile[0].args if im.tile else None
    except (AttributeError, IndexError):
        return ""
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return ""


def _exif_orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1))
    except Exception:  # corrupt EXIF must not make a readable photo unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Make an image stored with EXIF `orientation` upright (same result as ImageOps.exif_transpose)."""
    if orientation == 2:
        a = a[:, ::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 4:
        a = a[::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = np.rot90(a, k=-1)  # clockwise
    elif orientation == 7:
        a = a[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        a = np.rot90(a, k=1)
    return np.ascontiguousarray(a)


_ALPHA_MODES = frozenset({"RGBA", "RGBa", "PA", "LA", "La"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La"})


def _pillow_to_array(im: Image.Image) -> tuple[np.ndarray, bool]:
    """Decoded Pillow image -> (array in L, LA, RGB or RGBA channel order, is_gray)."""
    mode = im.mode
    if mode == "F":
        raise _Unsupported("floating-point images are not supported")
    if mode == "I":  # 32-bit integers: some TIFF writers use it for 16-bit data
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise _Unsupported("32-bit integer images are not supported")
        return a.astype(np.uint16), True
    if mode.startswith("I;16"):
        return np.asarray(im).astype(np.uint16), True  # native byte order ("I;16B" is big-endian)
    # A colour key (PNG tRNS, GIF transparency) becomes a real alpha channel.
    with_alpha = mode in _ALPHA_MODES or "transparency" in im.info
    if mode in _GRAY_MODES:
        target = "LA" if with_alpha else "L"
    else:  # P, CMYK, YCbCr, LAB, RGBX, ...: Pillow's formulas, no colour management
        target = "RGBA" if with_alpha else "RGB"
    if mode != target:
        im = im.convert(target)
    return np.asarray(im), target in ("L", "LA")


class _Unsupported(Exception):
    """Internal: a readable file holding data we do not handle; the message is user-facing."""


def _png_chunks_fit(data: bytes) -> bool:
    """Every chunk's declared length fits in the file. OpenCV's PNG reader allocates whatever a
    chunk claims: a 5 kB file whose IDAT says 2.6 GB cost 2.5 GB of memory and 5 s (OpenCV 5.0)."""
    pos = 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length  # length, type, data, CRC
        if end > len(data):
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = end
    return False


def _decode_16bit_colour(f: BinaryIO, path: Path, size: tuple[int, int]) -> np.ndarray:
    """16-bit colour PNG/TIFF via OpenCV (Pillow would keep only 8 bits). Returns BGR(A) uint16."""
    f.seek(0)
    data = f.read()
    if data.startswith(b"\x89PNG") and not _png_chunks_fit(data):
        raise ImageReadError(path, "file is truncated or corrupt")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        a = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. over OPENCV_IO_MAX_IMAGE_PIXELS
        raise ImageReadError(path, f"OpenCV refused to decode it ({str(exc).strip().splitlines()[-1]})") from None
    if a is None:
        raise ImageReadError(path, "file is truncated or corrupt")
    if a.shape[1::-1] != size:
        raise ImageReadError(path, f"corrupt file (header says {size[0]}x{size[1]}, data is {a.shape[1]}x{a.shape[0]})")
    return a


def _check_regular_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise ImageReadError(path, "not a regular file")
    if st.st_size == 0:
        raise ImageReadError(path, "file is empty")


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read one image file for the pipeline; see the module docstring for what comes out.

    max_pixels: refuse images with more pixels than this (checked on the header, before decoding);
        None turns the check off. Raises ImageReadError (and only that) for any unusable file.
    """
    path = Path(path)
    _check_regular_file(path)
    try:
        with open(path, "rb") as f:
            return _read_open_file(f, path, max_pixels)
    except ImageReadError:
        raise
    except _Unsupported as exc:
        raise ImageReadError(path, str(exc)) from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it") from None
    except Exception as exc:  # the promise: one message per bad file, never a traceback
        raise ImageReadError(path, _describe_decode_error(exc)) from exc


def _read_open_file(f: BinaryIO, path: Path, max_pixels: int | None) -> LoadedImage:
    with _PIL_LOCK:
        try:
            with _pillow_limit(None):  # our own check below, with a message that gives the size
                im = Image.open(f)
        except UnidentifiedImageError:
            f.seek(0)
            reason = _sniff_unsupported(f.read(64)) or "not an image (unrecognised format)"
            raise ImageReadError(path, reason) from None
        width, height = im.size
        fmt = im.format or "?"
        rawmode = _tile_rawmode(im)  # before anything loads the image: loading clears the tiles
        wide_colour = ";16" in rawmode and not im.mode.startswith("I")
        try:
            if width <= 0 or height <= 0:
                raise ImageReadError(path, f"corrupt header (size {width}x{height})")
            if max_pixels is not None and width * height > max_pixels:
                raise ImageReadError(path, _too_big_message(width, height, max_pixels))
            with _pillow_limit(max_pixels):  # frames/tiles that disagree with the header
                if wide_colour:
                    array = _decode_16bit_colour(f, path, im.size)
                    is_gray = rawmode.split(";")[0] in ("L", "LA")  # Pillow opens 16-bit LA as "RGBA"
                    channel_order = "BGR"
                    # Pillow's PNG getexif() decodes the image to find an eXIf chunk after the
                    # pixel data; not worth a second decode here, so only an early chunk counts.
                    orientation = _exif_orientation(im) if fmt != "PNG" or "exif" in im.info else 1
                else:
                    im.load()
                    array, is_gray = _pillow_to_array(im)
                    channel_order = "RGB"
                    orientation = _exif_orientation(im)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageReadError(path, _too_big_message(width, height, max_pixels or 0)) from None
        finally:
            im.close()

    pixels, alpha = _split_channels(array, channel_order)
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(path, f"unsupported sample type {pixels.dtype}")
    if orientation != 1:
        pixels = _apply_orientation(pixels, orientation)
        alpha = None if alpha is None else _apply_orientation(alpha, orientation)
    return LoadedImage(
        pixels=pixels,
        alpha=alpha,
        is_gray=is_gray,
        bit_depth=16 if pixels.dtype == np.uint16 else 8,
        path=path,
        format=fmt,
        ext=path.suffix.lower(),
        orientation=orientation,
    )


def _split_channels(a: np.ndarray, order: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W) / (H, W, 1|2|3|4) in RGB(A)/L(A) or BGR(A) order -> BGR (H, W, 3) and alpha (H, W) or None."""
    if a.ndim == 2:
        a = a[:, :, None]
    channels = a.shape[2]
    alpha = np.ascontiguousarray(a[:, :, -1]) if channels in (2, 4) else None
    if channels in (1, 2):
        bgr = np.repeat(a[:, :, :1], 3, axis=2)
    elif order == "RGB":
        bgr = np.ascontiguousarray(a[:, :, 2::-1])
    else:
        bgr = np.ascontiguousarray(a[:, :, :3])
    return bgr, alpha


# ----------------------------------------------------------------------------------------------
# putting the result back together


def compose_output(
    restored_bgr: np.ndarray,
    loaded: LoadedImage,
    alpha_upscaled: np.ndarray | None = None,
    keep_gray: bool = True,
) -> np.ndarray:
    """Restored (H', W', 3) BGR (uint8, uint16 or float in [0, 1]) -> the array to write.

    Returns the input's bit depth; (H', W') for a gray input when keep_gray, else (H', W', 3) BGR;
    (H', W', 4) BGRA when the input had alpha (gray + alpha: three equal channels). The alpha is
    `alpha_upscaled` if given (any dtype, float taken as [0, 1]), else the input's alpha resized
    bilinearly to (H', W') as Real-ESRGAN does.
    """
    if restored_bgr.ndim != 3 or restored_bgr.shape[2] != 3:
        raise ValueError(f"restored image must be (H, W, 3) BGR, got shape {restored_bgr.shape}")
    out = convert_bit_depth(restored_bgr, loaded.bit_depth)
    height, width = out.shape[:2]
    gray = keep_gray and loaded.is_gray
    if gray:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)

    alpha = alpha_upscaled if alpha_upscaled is not None else loaded.alpha
    if alpha is None:
        return out
    if alpha.ndim == 3:
        alpha = alpha[:, :, 0]
    alpha = convert_bit_depth(alpha, loaded.bit_depth)
    if alpha.shape != (height, width):
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
    colour = np.repeat(out[:, :, None], 3, axis=2) if gray else out
    return np.ascontiguousarray(np.dstack([colour, alpha]))


def holds_alpha(ext: str) -> bool:
    """Whether files with this extension can store transparency (PNG, TIFF, WebP: yes; JPEG: no)."""
    fmt = _WRITE_FORMATS.get(ext.lower() if ext.startswith(".") else "." + ext.lower())
    return fmt is not None and fmt.alpha


def choose_output_ext(loaded: LoadedImage, ext: str | None = None) -> str:
    """The extension to save a result under: `ext` if given (forced: the caller asked for it),
    else the input's own when we can write it and it holds the data, else ".png"."""
    if ext:
        return ext.lower() if ext.startswith(".") else "." + ext.lower()
    fmt = _WRITE_FORMATS.get(loaded.ext)
    if fmt is None or (loaded.alpha is not None and not fmt.alpha) or loaded.bit_depth > fmt.max_depth:
        return ".png"
    return loaded.ext


# ----------------------------------------------------------------------------------------------
# writing


def _encode(img: np.ndarray, path: Path, ext: str, quality: int) -> bytes:
    fmt = _WRITE_FORMATS.get(ext)
    if fmt is None:
        writable = ", ".join(sorted(WRITABLE_EXTENSIONS))
        raise ImageWriteError(path, f"cannot write {ext or 'files without an extension'} (use one of {writable})")
    if not isinstance(img, np.ndarray) or img.dtype not in (np.uint8, np.uint16):
        dtype = getattr(img, "dtype", type(img).__name__)
        raise ImageWriteError(path, f"image must be a uint8 or uint16 array, got {dtype} (see from_float01)")
    channels = 1 if img.ndim == 2 else (img.shape[2] if img.ndim == 3 else 0)
    if channels not in (1, 3, 4) or img.size == 0:
        raise ImageWriteError(path, f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {img.shape}")
    if channels == 4 and not fmt.alpha:
        raise ImageWriteError(path, f"{fmt.name} cannot store transparency (write .png, .webp or .tiff)")
    if img.dtype == np.uint16 and fmt.max_depth == 8:
        img = convert_bit_depth(img, 8)  # documented: 16-bit data saved as JPEG/WebP/BMP loses its low bits

    params: list[int] = []
    if fmt.name == "JPEG":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif fmt.name == "WebP":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]  # above 100: lossless
    try:
        ok, buf = cv2.imencode(fmt.cv2_ext, np.ascontiguousarray(img), params)
    except cv2.error as exc:
        raise ImageWriteError(path, f"cannot encode {fmt.name} ({str(exc).strip().splitlines()[-1]})") from None
    if not ok:
        raise ImageWriteError(path, f"cannot encode {fmt.name}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, img: np.ndarray, ext: str | None = None, quality: int = 95) -> Path:
    """Write `img` (uint8/uint16, (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA) atomically.

    ext: format to encode (".png", "jpg", ...); default: the path's extension. quality: JPEG/WebP
    quality. Parent folders are created. The file appears complete or not at all; on any error the
    temporary file is removed, a file already at `path` is left as it was, and ImageWriteError is
    raised. Returns the path written.
    """
    path = Path(path)
    ext = (ext if ext.startswith(".") else "." + ext).lower() if ext else path.suffix.lower()
    data = _encode(img, path, ext, quality)  # everything that can fail on the data fails before disk

    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        if path.is_dir():
            raise ImageWriteError(path, "is a folder") from exc
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise ImageWriteError(path, f"cannot write it ({reason})") from exc
    return path


def encode_image(img: np.ndarray, ext: str, quality: int = 95, *, name: str | os.PathLike = "image") -> bytes:
    """The bytes of ``img`` in the format of ``ext`` (".png", "jpg", ...), as write_image writes
    them; for callers that write several files at once (:class:`~facerestore.io.atomic.StagedFiles`)
    or send them over the network. Raises ImageWriteError naming ``name``."""
    ext = (ext if ext.startswith(".") else "." + ext).lower()
    return _encode(img, Path(name), ext, quality)


# ----------------------------------------------------------------------------------------------
# inputs


def _is_hidden(p: Path) -> bool:
    if p.name.startswith("."):
        return True
    attrs = getattr(p.stat(), "st_file_attributes", 0)  # Windows' hidden flag
    return bool(attrs & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def list_images(path: str | os.PathLike) -> list[Path]:
    """The images a `-i` argument names: a file (taken as is, whatever its extension) or a folder
    (its image files by extension, case-insensitive, sorted by name, hidden files skipped, not
    recursive). Raises FileNotFoundError when the path does not exist."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such file or folder", str(path))
    found = []
    for entry in path.iterdir():
        try:
            if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file() and not _is_hidden(entry):
                found.append(entry)
        except OSError:  # a broken link or a file that vanished: not an input
            continue
    return sorted(found, key=lambda p: p.name)
