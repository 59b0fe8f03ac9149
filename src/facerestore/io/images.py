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
  * EXIF orientation is applied, so JPEGs from phones come out upright (as `cv2.imread` does);
    in PNG also from an eXIf chunk after the pixel data, at 8 and 16 bits alike.
  * A truncated file is an error (Pillow's LOAD_TRUNCATED_IMAGES is never set). libjpeg, though,
    invents grey pixels for missing data when the file still ends with EOI, so a JPEG is first
    checked on its bytes: a Huffman-coded JPEG needs at least one bit per 8x8 block for its DC
    codes, and one holding less scan data than that ("truncated or corrupt JPEG: declares
    9000x9000 but holds 631 bytes") is refused before anything is allocated. Arithmetic-coded
    JPEG (rare) has no such bound and is left to the decoder.
  * Every failure is an `ImageReadError` with one line naming the file; nothing else escapes.
    The messages say what the file is: "floating-point TIFF is not supported; convert it to 8- or
    16-bit", "is a symbolic link loop", "is a broken symbolic link", "HEIC/HEIF photos are not
    supported ...", rather than "unrecognised format" or "not found".
  * `peek_size` gives the upright (width, height) from the header alone, and `check_output_pixels`
    refuses a scale whose output would be too big: a pipeline calls both before decoding.

What comes out (`LoadedImage`):
  * `pixels` is always HxWx3 BGR (the face models want 3 channels), uint8 or uint16.
    Grey inputs are replicated into 3 channels and flagged `is_grey`; palette, CMYK, YCbCr, 1-bit...
    are converted to BGR. No colour management: an embedded ICC profile is ignored.
  * `alpha` is HxW with the same dtype as `pixels`, or None. A palette or colour-key transparency
    (PNG tRNS) becomes a real alpha channel.
  * `bit_depth` is 8 or 16. 32-bit integer images whose values fit in 16 bits are read as 16-bit;
    float images are refused.
  * Multi-frame files (animated GIF/PNG/WebP, multi-page TIFF) give their first frame, and
    `notes` says so ("animated GIF with 12 frames: only the first is restored"): `notes` holds
    what the user should be told about how the file was read (empty for an ordinary photo).

The image contract (`to_pipeline`, `from_pipeline`, `is_grey`), the same for every front-end:
  * `to_pipeline(loaded)` is what the pipeline is given: BGR, or BGRA with alpha, 8 or 16 bit.
  * `from_pipeline(result, loaded)` gives the restored image back in the input's kind: grey as one
    channel (`cv2.COLOR_BGR2GRAY`, as Real-ESRGAN does; also colour photos whose channels are
    equal within 2 levels, `is_grey`, come back grey, as three equal channels), alpha upscaled and
    re-attached as BGRA (grey + alpha is written as BGRA with three equal channels, since OpenCV
    cannot encode 2-channel images), and the input's bit depth. Given the input array instead of
    a `LoadedImage`, it does the same for the Restorer's own callers.

Writing (`write_image`):
  * Models compute in float: `to_float01` / `from_float01` map uint8/uint16 to [0, 1] and back
    (x / 255 or x / 65535; back with clip, x * max, round half to even).
  * `write_image` encodes in memory, writes a temporary file in the target folder, fsyncs it and
    renames it over the target with `os.replace`: the target is either the old file or the complete
    new one, never a partial file. Formats that hold only 8 bits (JPEG, WebP, BMP) get 16-bit data
    converted to 8-bit (round(x / 257)); JPEG cannot hold transparency, which is an error (pick .png,
    .webp or .tiff; `choose_output_ext` does that for you).

Inputs (`scan_inputs`, `list_images`):
  * A file is taken as it is; a folder gives its image files by extension, sorted, not recursive.
    `scan_inputs` also lists what it passed over and why (subfolders, broken links, link loops,
    unreadable or non-regular files, HEIC/RAW/SVG/EXR files); hidden files and other extensions
    (sidecars, videos) are passed over silently. `list_images` is its `.files`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write_bytes
from .headers import jpeg_shortfall, png_chunks_fit, png_late_exif_orientation, tiff_sample_formats

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GREY_TOLERANCE",
    "IMAGE_EXTENSIONS",
    "WRITABLE_EXTENSIONS",
    "ImageReadError",
    "ImageWriteError",
    "InputScan",
    "LoadedImage",
    "OutputTooLargeError",
    "UNSUPPORTED_IMAGE_EXTENSIONS",
    "check_output_pixels",
    "choose_output_ext",
    "convert_bit_depth",
    "cv2_imread",
    "encode_image",
    "from_float01",
    "from_pipeline",
    "is_grey",
    "list_images",
    "peek_size",
    "read_image",
    "scaled_size",
    "scan_inputs",
    "to_float01",
    "to_pipeline",
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


class OutputTooLargeError(ValueError):
    """A result that would be bigger than allowed (see `check_output_pixels`). One line; starts with
    "<file>: " when the caller named the input file."""

    def __init__(self, reason: str, path: str | os.PathLike | None = None):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(reason if self.path is None else f"{self.path}: {reason}")


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
    is_grey: bool  # stored with one grey channel (pixels hold it three times)
    bit_depth: int  # 8 or 16
    path: Path
    format: str  # Pillow's format name: "JPEG", "PNG", "TIFF", ...
    ext: str  # the file's extension, lower case with the dot ("" if none)
    orientation: int = 1  # the EXIF orientation that was applied (1 = none)
    # What the user should know about how the file was read, one line each, e.g. "animated GIF
    # with 12 frames: only the first is restored". Empty for an ordinary photo.
    notes: list[str] = field(default_factory=list)

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


_FLOAT_TIFF = "floating-point TIFF is not supported; convert it to 8- or 16-bit"
_FLOAT_IMAGE = "floating-point images are not supported; convert it to 8- or 16-bit"


def _sniff_unsupported(head: bytes, f: BinaryIO) -> str | None:
    """A clearer message than "unrecognised" for formats people do have but we do not read."""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIC/HEIF photos are not supported (convert it to JPEG or PNG first)"
    if head.lstrip()[:5].lower() in (b"<?xml", b"<svg ") or head.lstrip()[:4].lower() == b"<svg":
        return "SVG (vector) images are not supported (export it to PNG first)"
    if head[:4] == b"\x76\x2f\x31\x01":
        return "OpenEXR " + _FLOAT_IMAGE
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "Radiance HDR " + _FLOAT_IMAGE
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        # Pillow opens 1-channel float TIFF (and we refuse it later) but not 3- or 4-channel ones.
        if 3 in tiff_sample_formats(f):
            return _FLOAT_TIFF
        return "TIFF that cannot be read (corrupt, or a layout we do not support: try 8- or 16-bit RGB)"
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
        tile = getattr(im, "tile", None)  # set by the file plug-ins (ImageFile), not on every Image
        args = tile[0].args if tile else None
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
_GREY_MODES = frozenset({"1", "L", "LA", "La"})


def _pillow_to_array(im: Image.Image) -> tuple[np.ndarray, bool]:
    """Decoded Pillow image -> (array in L, LA, RGB or RGBA channel order, is_grey)."""
    mode = im.mode
    if mode == "F":
        raise _UnsupportedError(_FLOAT_TIFF if im.format == "TIFF" else _FLOAT_IMAGE)
    if mode == "I" or mode.startswith("I;16"):
        a = np.asarray(im)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):  # some TIFF writers
            raise _UnsupportedError("32-bit integer images are not supported")  # use "I" for 16-bit data
        a = a.astype(np.uint16)  # native byte order ("I;16B" is big-endian)
        key = im.info.get("transparency")  # 16-bit grey PNG with a tRNS colour key
        if isinstance(key, int):
            return np.dstack([a, np.where(a == key, 0, 65535).astype(np.uint16)]), True
        return a, True
    # A colour key (PNG tRNS, GIF transparency) becomes a real alpha channel.
    with_alpha = mode in _ALPHA_MODES or "transparency" in im.info
    if mode in _GREY_MODES:
        target = "LA" if with_alpha else "L"
    else:  # P, CMYK, YCbCr, LAB, RGBX, ...: Pillow's formulas, no colour management
        target = "RGBA" if with_alpha else "RGB"
    if mode != target:
        im = im.convert(target)
    return np.asarray(im), target in ("L", "LA")


class _UnsupportedError(Exception):
    """Internal: a readable file holding data we do not handle; the message is user-facing."""


def _decode_16bit_colour(f: BinaryIO, path: Path, size: tuple[int, int]) -> np.ndarray:
    """16-bit colour PNG/TIFF via OpenCV (Pillow would keep only 8 bits). Returns BGR(A) uint16."""
    f.seek(0)
    data = f.read()
    if data.startswith(b"\x89PNG") and not png_chunks_fit(data):
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


def _header_orientation(im: Image.Image, f: BinaryIO) -> int:
    """EXIF orientation without decoding the pixels (Pillow's PNG getexif() would decode them)."""
    if im.format == "PNG" and "exif" not in im.info:
        return png_late_exif_orientation(f)
    return _exif_orientation(im)


_FRAME_KINDS = {"GIF": ("animated GIF", "frames"), "PNG": ("animated PNG", "frames"),
                "WEBP": ("animated WebP", "frames"), "TIFF": ("multi-page TIFF", "pages")}


def _frames_note(im: Image.Image) -> str | None:
    """A note when the file holds more images than the first one we restore."""
    if im.format == "MPO":  # a camera's extra previews / depth maps, not frames the user made
        return None
    try:
        n = int(getattr(im, "n_frames", 1))  # walks frame headers, decodes nothing
    except Exception:  # a broken later frame: the first one may still be fine, so go back to it
        with contextlib.suppress(Exception):
            im.seek(0)
        return None
    if n <= 1:
        return None
    kind, unit = _FRAME_KINDS.get(im.format or "", (f"{im.format} file", "frames"))
    return f"{kind} with {n} {unit}: only the first is restored"


def _check_regular_file(path: Path) -> int:
    """Refuse what is not a readable, non-empty regular file, saying why; returns its size."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "is a broken symbolic link" if path.is_symlink() else "file not found") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageReadError(path, "is a symbolic link loop") from None
        raise ImageReadError(path, f"cannot open it ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(path, "is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise ImageReadError(path, "not a regular file")
    if st.st_size == 0:
        raise ImageReadError(path, "file is empty")
    return st.st_size


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read one image file for the pipeline; see the module docstring for what comes out.

    max_pixels: refuse images with more pixels than this (checked on the header, before decoding);
        None turns the check off. Raises ImageReadError (and only that) for any unusable file.
    """
    path = Path(path)
    size = _check_regular_file(path)
    try:
        with open(path, "rb") as f:
            return _read_open_file(f, path, max_pixels, size)
    except ImageReadError:
        raise
    except _UnsupportedError as exc:
        raise ImageReadError(path, str(exc)) from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it") from None
    except Exception as exc:  # the promise: one message per bad file, never a traceback
        raise ImageReadError(path, _describe_decode_error(exc)) from exc


def _open_header(f: BinaryIO, path: Path) -> Image.Image:
    """Pillow's lazy open (header only); unrecognised files get the clearest message we have."""
    try:
        with _pillow_limit(None):  # our own check comes after, with a message that gives the size
            return Image.open(f)
    except UnidentifiedImageError:
        f.seek(0)
        reason = _sniff_unsupported(f.read(64), f) or "not an image (unrecognised format)"
        raise ImageReadError(path, reason) from None


def _read_open_file(f: BinaryIO, path: Path, max_pixels: int | None, file_size: int) -> LoadedImage:
    notes: list[str] = []
    with _PIL_LOCK:
        im = _open_header(f, path)
        width, height = im.size
        fmt = im.format or "?"
        rawmode = _tile_rawmode(im)  # before anything loads the image: loading clears the tiles
        wide_colour = ";16" in rawmode and not im.mode.startswith("I")
        try:
            if width <= 0 or height <= 0:
                raise ImageReadError(path, f"corrupt header (size {width}x{height})")
            if max_pixels is not None and width * height > max_pixels:
                raise ImageReadError(path, _too_big_message(width, height, max_pixels))
            if fmt in ("JPEG", "MPO"):
                # libjpeg makes up grey pixels for missing data as long as the file ends with EOI:
                # 631 bytes declaring 9000x9000 decoded "fine" to 243 MB of grey (and a 4x output).
                here = f.tell()
                if jpeg_shortfall(f) is not None:
                    raise ImageReadError(
                        path, f"truncated or corrupt JPEG: declares {width}x{height} but holds {file_size} bytes")
                f.seek(here)
            note = _frames_note(im)
            if note:
                notes.append(note)
            with _pillow_limit(max_pixels):  # frames/tiles that disagree with the header
                if wide_colour:
                    array = _decode_16bit_colour(f, path, im.size)
                    is_grey = rawmode.split(";")[0] in ("L", "LA")  # Pillow opens 16-bit LA as "RGBA"
                    channel_order = "BGR"
                    orientation = _header_orientation(im, f)
                else:
                    im.load()
                    array, is_grey = _pillow_to_array(im)
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
        is_grey=is_grey,
        bit_depth=16 if pixels.dtype == np.uint16 else 8,
        path=path,
        format=fmt,
        ext=path.suffix.lower(),
        orientation=orientation,
        notes=notes,
    )


def peek_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of the image `read_image` would return, from the header alone.

    Nothing is decoded and no pixel limit applies, so a pipeline can refuse a run whose output
    would be too big (`check_output_pixels`) before paying for the decode. EXIF orientations 5-8
    (quarter turns) swap the two, as `read_image` does. Raises ImageReadError for a file that is
    missing, not an image, or whose header is unusable; a file that passes may still fail to decode.
    """
    path = Path(path)
    _check_regular_file(path)
    try:
        with open(path, "rb") as f, _PIL_LOCK:
            im = _open_header(f, path)
            try:
                width, height = im.size
                if width <= 0 or height <= 0:
                    raise ImageReadError(path, f"corrupt header (size {width}x{height})")
                orientation = _header_orientation(im, f)
            finally:
                im.close()
    except ImageReadError:
        raise
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except Exception as exc:
        raise ImageReadError(path, _describe_decode_error(exc)) from exc
    return (height, width) if orientation >= 5 else (width, height)


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size of a `width` x `height` image after upscaling by `scale`, rounded down as the
    upsampler's final resize does: (int(width * scale), int(height * scale))."""
    return int(width * scale), int(height * scale)


def check_output_pixels(
    width: int,
    height: int,
    scale: float,
    max_output_pixels: float | None,
    *,
    path: str | os.PathLike | None = None,
) -> None:
    """Refuse an upscale whose result would exceed `max_output_pixels` (None: no limit).

    `width` x `height` is the input (e.g. from `peek_size`), `scale` the final factor. Raises
    ValueError for a scale that is not a finite number > 0 or that shrinks the image to nothing,
    and OutputTooLargeError (a ValueError; its message starts with "<path>: " when `path` is given)
    when the result is too big. Costs nothing: call it before reading the file.
    """
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a number, got {scale!r}") from None
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number above 0, got {scale!r}")
    out_w, out_h = scaled_size(width, height, scale)
    if out_w < 1 or out_h < 1:
        reason = f"scale {scale:g} turns the {width}x{height} image into {out_w}x{out_h} pixels (use a larger scale)"
        raise ValueError(reason if path is None else f"{os.fspath(path)}: {reason}")
    if max_output_pixels is not None and out_w * out_h > max_output_pixels:
        raise OutputTooLargeError(
            f"{width}x{height} at scale {scale:g} would give {out_w}x{out_h} = {out_w * out_h / 1e6:.1f} MP, "
            f"over the output limit of {max_output_pixels / 1e6:.1f} MP (use a smaller scale)",
            path,
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


# Channels closer than this (in 8-bit levels) are one grey image stored as colour (a scanned
# print saved as RGB JPEG); such photos come back grey like true single-channel ones.
GREY_TOLERANCE = 2


def is_grey(img: np.ndarray) -> bool:
    """The one grey test: True for one-channel images (``(H, W)``, ``(H, W, 1)``) and for colour
    ones (uint8 or uint16; an alpha channel is not looked at) whose channels all lie within
    ``GREY_TOLERANCE`` 8-bit levels of each other."""
    if img.ndim == 2 or img.shape[2] == 1:
        return True
    tolerance = GREY_TOLERANCE * (257 if img.dtype == np.uint16 else 1)
    # absdiff in the image's own dtype: no full-size int32 copies of a large photo.
    b, g, r = (np.ascontiguousarray(img[:, :, i]) for i in range(3))
    return bool(cv2.absdiff(b, g).max() <= tolerance and cv2.absdiff(g, r).max() <= tolerance)


def to_pipeline(loaded: LoadedImage) -> np.ndarray:
    """The array every front-end gives the pipeline (``Restorer.restore``) for a read image:
    ``(H, W, 3)`` BGR, or ``(H, W, 4)`` BGRA when it has alpha, in its own bit depth (uint8 or
    uint16), as ``cv2.imread(IMREAD_UNCHANGED)`` gives a colour file. A grey image comes as three
    equal channels; :func:`from_pipeline` gives it back as one."""
    if loaded.alpha is None:
        return loaded.pixels
    return np.ascontiguousarray(np.dstack([loaded.pixels, loaded.alpha]))


def from_pipeline(image: np.ndarray, like: LoadedImage | np.ndarray, *, keep_grey: bool = True) -> np.ndarray:
    """The pipeline's result back in the input's kind: the array to write, or to hand back.

    ``image``: the restored (upscaled) image, ``(H', W')``, ``(H', W', 1|3)`` or ``(H', W', 4)``
    with alpha; uint8, uint16 or float in [0, 1]. ``like``: the input, as the
    :class:`LoadedImage` it was read as or the array the pipeline was given. The result has:

    * the input's bit depth (:func:`convert_bit_depth`: 8 -> 16 is x257, 16 -> 8 is round(x / 257));
    * when ``keep_grey`` and the input :func:`is_grey`: one grey (``cv2.COLOR_BGR2GRAY``, as
      Real-ESRGAN does), as ``(H', W')`` when the input had one channel (a grey file, a 2-D
      array), else as three equal channels;
    * when the input had alpha: ``image``'s own fourth channel (upscaled with it), else the
      input's alpha resized bilinearly to ``(H', W')`` as Real-ESRGAN does, attached as BGRA
      (grey + alpha as three equal channels + alpha: OpenCV cannot encode two channels). An
      input without alpha gives none.
    """
    if isinstance(like, LoadedImage):
        pixels, alpha_in, bit_depth, one_channel = like.pixels, like.alpha, like.bit_depth, like.is_grey
    else:
        pixels, one_channel = like, like.ndim == 2 or like.shape[2] == 1
        alpha_in = like[:, :, 3] if like.ndim == 3 and like.shape[2] == 4 else None
        bit_depth = 16 if like.dtype == np.uint16 else 8
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"restored image must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    colour = convert_bit_depth(image[:, :, :3] if image.shape[2] != 1 else np.repeat(image, 3, axis=2), bit_depth)
    height, width = colour.shape[:2]
    grey = cv2.cvtColor(np.ascontiguousarray(colour), cv2.COLOR_BGR2GRAY) if keep_grey and is_grey(pixels) else None
    if grey is not None:
        if alpha_in is None and one_channel:
            return grey
        colour = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if alpha_in is None:
        return np.ascontiguousarray(colour)
    alpha = convert_bit_depth(image[:, :, 3] if image.shape[2] == 4 else alpha_in, bit_depth)
    if alpha.shape != (height, width):
        alpha = cv2.resize(alpha, (width, height), interpolation=cv2.INTER_LINEAR)
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
    """Write `img` (uint8/uint16, (H, W) grey, (H, W, 3) BGR or (H, W, 4) BGRA) atomically.

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


# Extensions of image formats people have but we cannot read: a folder of them is reported, not
# silently found empty. Other extensions (sidecars, videos, documents) are skipped silently.
UNSUPPORTED_IMAGE_EXTENSIONS = {
    ".heic": "HEIC/HEIF photos are not supported (convert them to JPEG or PNG first)",
    ".heif": "HEIC/HEIF photos are not supported (convert them to JPEG or PNG first)",
    ".svg": "SVG (vector) images are not supported (export them to PNG first)",
    ".exr": "OpenEXR " + _FLOAT_IMAGE.replace("convert it", "convert them"),
    ".hdr": "Radiance HDR " + _FLOAT_IMAGE.replace("convert it", "convert them"),
    **dict.fromkeys(
        (".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw"),
        "camera RAW files are not supported (develop them to JPEG, PNG or 16-bit TIFF first)",
    ),
}


@dataclass
class InputScan:
    """What an input path gives (`scan_inputs`): the files to read, and the entries of a folder
    that are passed over, each with the reason, for the user to see."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def cv2_imread(path: str | os.PathLike, flags: int = cv2.IMREAD_COLOR) -> np.ndarray | None:
    """``cv2.imread(path, flags)`` for any file name (it fails on non-ASCII paths on some
    platforms): the exact pixels of the protocols that read with OpenCV (the metrics), ``None``
    for an empty or undecodable file. No size check: the pipeline's inputs use read_image."""
    data = np.fromfile(os.fspath(path), dtype=np.uint8)
    return cv2.imdecode(data, flags) if data.size else None


def _is_hidden(p: Path, st: os.stat_result | None = None) -> bool:
    if p.name.startswith("."):
        return True
    attrs = getattr(st if st is not None else p.stat(), "st_file_attributes", 0)  # Windows' hidden flag
    return bool(attrs & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def _input_problem(path: Path) -> tuple[str, int]:
    """Why `path` (which cannot be stat()ed or is no file or folder) is no input; with an errno."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return "is a broken symbolic link", errno.ENOENT
        return "no such file or folder", errno.ENOENT
    except PermissionError:
        return "permission denied", errno.EACCES
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symbolic link loop", errno.ELOOP
        return f"cannot open it ({exc.strerror or exc})", exc.errno or errno.EIO
    del st
    return "not a regular file or folder", errno.EINVAL


def scan_inputs(path: str | os.PathLike) -> InputScan:
    """The images an input argument names, and what was passed over.

    A file is taken as it is, whatever its extension (read_image judges it). A folder gives its
    files with an image extension (IMAGE_EXTENSIONS, any case), sorted by name, not recursive.
    `skipped` lists, sorted by name: subfolders (not searched), broken symbolic links, link loops,
    unreadable entries and non-regular files (FIFOs, devices) among image-named entries, and
    files of image formats we cannot read (HEIC, RAW, SVG, EXR: UNSUPPORTED_IMAGE_EXTENSIONS).
    Hidden entries (a leading dot, our own temporary files included) and files with other
    extensions (sidecars, videos, documents) are passed over silently.

    Raises ImageReadError when `path` itself is no usable file or folder ("no such file or
    folder", "is a symbolic link loop", "is a broken symbolic link", "permission denied", ...).
    """
    path = Path(path)
    if path.is_file():
        return InputScan(files=[path])
    if not path.is_dir():
        raise ImageReadError(path, _input_problem(path)[0])
    try:
        entries = list(path.iterdir())
    except PermissionError:
        raise ImageReadError(path, "cannot list the folder (permission denied)") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot list the folder ({exc.strerror or exc})") from None

    scan = InputScan()
    for entry in sorted(entries, key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        ext = entry.suffix.lower()
        try:
            st = entry.stat()
        except OSError:
            if ext in IMAGE_EXTENSIONS:
                scan.skipped.append((entry, _input_problem(entry)[0]))
            continue
        if _is_hidden(entry, st):
            continue
        if stat.S_ISDIR(st.st_mode):
            scan.skipped.append((entry, "subfolder (folders are not searched recursively)"))
        elif ext in UNSUPPORTED_IMAGE_EXTENSIONS:
            scan.skipped.append((entry, UNSUPPORTED_IMAGE_EXTENSIONS[ext]))
        elif ext not in IMAGE_EXTENSIONS:
            continue
        elif not stat.S_ISREG(st.st_mode):
            scan.skipped.append((entry, "not a regular file"))
        elif not os.access(entry, os.R_OK):
            scan.skipped.append((entry, "cannot be read (permission denied)"))
        else:
            scan.files.append(entry)
    return scan


def list_images(path: str | os.PathLike) -> list[Path]:
    """The images a `-i` argument names: `scan_inputs(path).files` (a file as it is, or a
    folder's image files by extension, sorted, hidden files skipped, not recursive).

    Raises FileNotFoundError when the path is no usable file or folder; its strerror says why
    ("no such file or folder", "is a symbolic link loop", "is a broken symbolic link", ...).
    """
    try:
        return scan_inputs(path).files
    except ImageReadError as exc:
        raise FileNotFoundError(_input_problem(Path(path))[1], exc.reason, str(path)) from None
