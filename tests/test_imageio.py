"""facerestore.io.images: every kind of input people have, every kind of bad file, atomic writes.

All inputs are generated in tmp_path; the "bombs" are small files whose headers lie.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from facerestore.io import headers
from facerestore.io import images as imageio
from facerestore.io.images import (
    ImageReadError,
    ImageWriteError,
    choose_output_ext,
    convert_bit_depth,
    from_float01,
    from_pipeline,
    is_grey,
    InputScan,
    OutputTooLargeError,
    check_output_pixels,
    list_images,
    peek_size,
    read_image,
    scan_inputs,
    to_float01,
    write_image,
)

RNG = np.random.default_rng(0)


def _rand(shape, dtype=np.uint8) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


def _asymmetric(h=24, w=40) -> np.ndarray:
    """An RGB image that no flip or rotation maps onto itself: smooth, so JPEG keeps it recognisable."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + 2 * y) % 256], axis=-1)
    return img.astype(np.uint8)


def _png(width: int, height: int, bit_depth: int = 8, color_type: int = 2, raw: bytes | None = None) -> bytes:
    """A PNG assembled by hand: header fields as given, IDAT = zlib(raw) (nothing if raw is None)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = chunk(b"IHDR", ihdr)
    if raw is not None:
        body += chunk(b"IDAT", zlib.compress(raw))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# what comes out for each kind of input


def test_rgb_png_is_bgr_like_cv2(tmp_path):
    rgb = _rand((9, 13, 3))
    path = tmp_path / "c.png"
    Image.fromarray(rgb).save(path)
    img = read_image(path)
    assert img.pixels.shape == (9, 13, 3) and img.pixels.dtype == np.uint8
    np.testing.assert_array_equal(img.pixels, rgb[:, :, ::-1])
    np.testing.assert_array_equal(img.pixels, cv2.imread(str(path)))
    assert (img.alpha, img.is_grey, img.bit_depth, img.format, img.ext) == (None, False, 8, "PNG", ".png")


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_stays_grey(tmp_path, dtype):
    grey = _rand((8, 11), dtype)
    path = write_image(tmp_path / "g.png", grey)
    img = read_image(path)
    assert img.is_grey and img.alpha is None and img.pixels.dtype == dtype
    assert img.bit_depth == (8 if dtype == np.uint8 else 16)
    for c in range(3):
        np.testing.assert_array_equal(img.pixels[:, :, c], grey)
    out = from_pipeline(img.pixels, img)
    assert out.shape == grey.shape
    np.testing.assert_array_equal(out, grey)
    assert from_pipeline(img.pixels, img, keep_grey=False).shape == (8, 11, 3)


def test_rgba_keeps_alpha(tmp_path):
    rgba = _rand((7, 10, 4))
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, rgba[:, :, 2::-1])
    np.testing.assert_array_equal(img.alpha, rgba[:, :, 3])
    out = from_pipeline(to_float01(img.pixels), img)  # float in, as from the model
    np.testing.assert_array_equal(out, cv2.imread(str(path), cv2.IMREAD_UNCHANGED))


def test_grey_alpha_and_bilevel(tmp_path):
    la = _rand((6, 5, 2))
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.is_grey
    np.testing.assert_array_equal(img.pixels[:, :, 1], la[:, :, 0])
    np.testing.assert_array_equal(img.alpha, la[:, :, 1])
    out = from_pipeline(img.pixels, img)  # grey + alpha -> BGRA with equal channels
    assert out.shape == (6, 5, 4)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    np.testing.assert_array_equal(out[:, :, 3], la[:, :, 1])

    bits = _rand((6, 9)) > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    assert img.is_grey and set(np.unique(img.pixels)) <= {0, 255}
    np.testing.assert_array_equal(img.pixels[:, :, 0] == 255, bits)


@pytest.mark.parametrize("transparent", [False, True])
def test_palette(tmp_path, transparent):
    rgb = _rand((10, 12, 3)) // 64 * 64  # few colours
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    if transparent:
        pal.info["transparency"] = 0
    pal.save(tmp_path / "p.png", **({"transparency": 0} if transparent else {}))
    img = read_image(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGBA" if transparent else "RGB"))
    np.testing.assert_array_equal(img.pixels, expected[:, :, 2::-1])
    if transparent:
        np.testing.assert_array_equal(img.alpha, expected[:, :, 3])
        assert (img.alpha == 0).any() and (img.alpha == 255).any()
    else:
        assert img.alpha is None


def test_cmyk_jpeg_becomes_bgr(tmp_path):
    rgb = _asymmetric()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=98)
    with Image.open(tmp_path / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
    img = read_image(tmp_path / "cmyk.jpg")
    assert img.pixels.shape == (24, 40, 3) and not img.is_grey
    assert np.abs(img.pixels.astype(int) - rgb[:, :, ::-1]).mean() < 4


@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_round_trip_exact(tmp_path, ext, channels):
    data = _rand((9, 14, channels), np.uint16)
    path = write_image(tmp_path / f"deep{ext}", data)
    img = read_image(path)
    assert img.bit_depth == 16 and img.pixels.dtype == np.uint16 and not img.is_grey
    np.testing.assert_array_equal(img.pixels, data[:, :, :3])
    if channels == 4:
        np.testing.assert_array_equal(img.alpha, data[:, :, 3])
    out = from_pipeline(img.pixels, img)
    np.testing.assert_array_equal(out, data)
    # ...and through the float pipeline, which must not lose the 16 bits either
    np.testing.assert_array_equal(from_pipeline(to_float01(img.pixels), img), data)
    write_image(tmp_path / f"again{ext}", out)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / f"again{ext}"), cv2.IMREAD_UNCHANGED), data)


def test_16bit_grey_tiff_and_grey_alpha_png(tmp_path):
    grey = _rand((5, 8), np.uint16)
    img = read_image(write_image(tmp_path / "g16.tif", grey))
    assert img.is_grey and img.bit_depth == 16
    np.testing.assert_array_equal(from_pipeline(img.pixels, img), grey)

    ga = _rand((5, 8, 2), np.uint16)  # PNG colour type 4 at 16 bits: Pillow alone would cut it to 8
    raw = b"".join(b"\x00" + ga[r].astype(">u2").tobytes() for r in range(5))
    img = read_image(_write(tmp_path / "ga16.png", _png(8, 5, 16, 4, raw)))
    assert img.is_grey and img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels[:, :, 0], ga[:, :, 0])
    np.testing.assert_array_equal(img.alpha, ga[:, :, 1])


def _tRNS(*values: int) -> bytes:
    data = struct.pack(">" + "H" * len(values), *values)
    return struct.pack(">I", len(data)) + b"tRNS" + data + struct.pack(">I", zlib.crc32(b"tRNS" + data))


@pytest.mark.parametrize("depth", [8, 16])
def test_grey_colour_key_becomes_alpha_at_any_depth(tmp_path, depth):
    # A tRNS colour key in a 16-bit grey PNG used to be dropped (8-bit grey and all RGB kept it).
    dtype = np.uint16 if depth == 16 else np.uint8
    grey = _rand((3, 4), dtype)
    grey[0, 0], grey[1, 2] = 7, 7
    raw = b"".join(b"\x00" + grey[r].astype(">u2" if depth == 16 else np.uint8).tobytes() for r in range(3))
    data = _png(4, 3, depth, 0, raw)
    data = data[:33] + _tRNS(7) + data[33:]  # after IHDR (8 + 25 bytes)
    img = read_image(_write(tmp_path / "key.png", data))
    assert img.is_grey and img.bit_depth == depth
    expected = np.where(grey == 7, 0, np.iinfo(dtype).max)
    np.testing.assert_array_equal(img.alpha, expected)
    np.testing.assert_array_equal(img.pixels[:, :, 0], grey)


def test_32bit_int_image_fitting_16_bits(tmp_path):
    values = _rand((4, 6), np.uint16).astype(np.int32)
    Image.fromarray(values, "I").save(tmp_path / "i32.tif")
    img = read_image(tmp_path / "i32.tif")
    assert img.bit_depth == 16 and img.is_grey
    np.testing.assert_array_equal(img.pixels[:, :, 0], values)


FLOAT_TIFF = "floating-point TIFF is not supported; convert it to 8- or 16-bit"


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_float_tiff_is_refused_as_float(tmp_path, channels):
    # Pillow opens 1-channel float TIFF (mode F) but cannot identify 3- or 4-channel ones, which
    # used to be "not an image (unrecognised format)".
    path = tmp_path / "f.tif"
    data = np.linspace(0, 1, 4 * 5 * channels, dtype=np.float32).reshape(4, 5, channels)
    if channels == 1:
        Image.fromarray(data[:, :, 0]).save(path)
    else:
        assert cv2.imwrite(str(path), data)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(err.value) == f"{path}: {FLOAT_TIFF}"


def test_unreadable_tiff_is_not_called_unrecognised(tmp_path):
    ifd = struct.pack("<H", 1) + bytes(12) + bytes(4)  # one meaningless entry: no size, no samples
    path = _write(tmp_path / "odd.tif", b"II*\x00" + struct.pack("<I", 8) + ifd)
    with pytest.raises(ImageReadError, match=r"odd\.tif: TIFF that cannot be read \(corrupt, or a layout"):
        read_image(path)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_asymmetric()).save(path, exif=exif, quality=95)
    img = read_image(path)
    assert img.orientation == orientation
    with Image.open(path) as im:
        stored = np.asarray(im)[:, :, ::-1]
        upright = np.asarray(ImageOps.exif_transpose(im))[:, :, ::-1]
    np.testing.assert_array_equal(img.pixels, upright)
    if orientation == 6:  # "rotate 90 CW to view": the top-left stored pixel ends up top-right
        assert img.pixels.shape == (40, 24, 3)
        np.testing.assert_array_equal(img.pixels, np.rot90(stored, k=-1))


def test_non_ascii_paths(tmp_path):
    data = _rand((6, 7, 3))
    path = tmp_path / "фото" / "写真 é.png"
    write_image(path, data)  # creates the folder
    assert path.is_file()
    np.testing.assert_array_equal(read_image(path).pixels, data)
    assert list_images(path.parent) == [path]
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "фото" / "нет.jpg")
    assert "нет.jpg" in str(err.value)


# ---------------------------------------------------------------------------------------------
# bad inputs: always ImageReadError, one line, naming the file


def _truncated_png(tmp_path):
    data = cv2.imencode(".png", _rand((40, 50, 3)))[1].tobytes()
    return _write(tmp_path / "cut.png", data[: len(data) // 2])


def _truncated_16bit_png(tmp_path):
    data = cv2.imencode(".png", _rand((40, 50, 3), np.uint16))[1].tobytes()
    return _write(tmp_path / "cut16.png", data[: len(data) // 2])


def _truncated_jpeg(tmp_path):
    data = cv2.imencode(".jpg", _rand((40, 50, 3)))[1].tobytes()
    return _write(tmp_path / "cut.jpg", data[:-200])


def _lying_chunk_length(tmp_path):
    # A 16-bit PNG (decoded by OpenCV) whose IDAT claims 2.6 GB: OpenCV would allocate all of it.
    data = bytearray(cv2.imencode(".png", _rand((24, 32, 3), np.uint16))[1].tobytes())
    idat = data.index(b"IDAT") - 4
    data[idat : idat + 4] = (0x9DE2D4D8).to_bytes(4, "big")
    return _write(tmp_path / "liar16.png", bytes(data))


def _bomb(tmp_path):
    # The start of a 30000x30000 RGB PNG (2.7 GB decoded) in ~150 bytes, cut inside IDAT so that
    # even a broken size check fails fast instead of decoding.
    return _write(tmp_path / "bomb.png", _png(30000, 30000, 8, 2, b"\x00" * (1 + 3 * 30000))[:-20])


CASES = {
    "truncated png": (_truncated_png, "file is truncated"),
    "truncated 16-bit png": (_truncated_16bit_png, "truncated"),
    "truncated jpeg": (_truncated_jpeg, "file is truncated"),
    "lying chunk length": (_lying_chunk_length, "file is truncated or corrupt"),
    "empty": (lambda d: _write(d / "empty.jpg", b""), "file is empty"),
    "text named .jpg": (lambda d: _write(d / "notes.jpg", b"hello, this is not a photo\n" * 5), "not an image"),
    "garbage": (lambda d: _write(d / "noise.png", _rand(3000).tobytes()), "not an image"),
    "png signature only": (lambda d: _write(d / "sig.png", b"\x89PNG\r\n\x1a\n"), ""),
    "heic": (lambda d: _write(d / "IMG_1.HEIC", b"\x00\x00\x00\x18ftypheic" + bytes(40)), "HEIC"),
    "folder": (lambda d: (d / "dir.png").mkdir() or d / "dir.png", "is a folder"),
    "missing": (lambda d: d / "missing.png", "file not found"),
    "bomb": (_bomb, "30000x30000 = 900.0 MP exceeds the limit of 100.0 MP (raise it with --max-pixels)"),
    "huge header, no data": (lambda d: _write(d / "huge.png", _png(2**31 - 1, 2**31 - 1)), "exceeds the limit"),
    "zero-size header": (lambda d: _write(d / "zero.png", _png(0, 0, raw=b"")), ""),
    "header without data": (lambda d: _write(d / "nodata.png", _png(64, 64)), ""),
    "bad bit depth": (lambda d: _write(d / "bd.png", _png(4, 4, 3, 2, b"\x00" * 20)), ""),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_error_naming_the_file(tmp_path, case):
    make, expected = CASES[case]
    path = make(tmp_path)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert type(err.value) is ImageReadError
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert expected in message
    assert err.value.path == str(path)


def test_lying_png_never_reaches_opencv(tmp_path, monkeypatch):
    path = _lying_chunk_length(tmp_path)

    def imdecode(*args):
        raise AssertionError("handed to OpenCV")

    monkeypatch.setattr(imageio.cv2, "imdecode", imdecode)
    with pytest.raises(ImageReadError, match=r"liar16\.png: file is truncated or corrupt$"):
        read_image(path)


def test_pixel_limit_is_ours_both_ways(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(_rand((100, 200, 3))).save(path)
    with pytest.raises(ImageReadError, match=r"small\.png: 200x100 = 0\.0 MP exceeds the limit of 0\.0 MP"):
        read_image(path, max_pixels=19_999)
    assert read_image(path, max_pixels=20_000).pixels.shape == (100, 200, 3)


def test_pillow_limit_does_not_override_ours(tmp_path, monkeypatch):
    # With Pillow's own limit at 1000 pixels, a 20000-pixel image is over twice it (Pillow would
    # raise DecompressionBombError); our limit is the one that counts, and Pillow's is restored.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "small.png"
    Image.fromarray(_rand((100, 200, 3))).save(path)
    assert read_image(path, max_pixels=20_000).pixels.shape == (100, 200, 3)
    assert read_image(path, max_pixels=None).pixels.shape == (100, 200, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_bomb_warning_during_decode_is_an_error(tmp_path, monkeypatch):
    # A decoder that discovers a size over the limit after the header check (as GIF frames can).
    path = tmp_path / "ok.png"
    Image.fromarray(_rand((10, 10, 3))).save(path)

    def load(self):
        Image._decompression_bomb_check((10_000, 10_000))

    monkeypatch.setattr(Image.Image, "load", load)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", load)
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        read_image(path, max_pixels=60_000_000)  # 100 MP: Pillow warns (> limit, < 2x limit)


# ---------------------------------------------------------------------------------------------
# writing


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_leaves_no_temp_and_replaces(tmp_path):
    path = tmp_path / "out" / "deep" / "x.jpg"
    write_image(path, _rand((8, 8, 3)))
    first = path.read_bytes()
    write_image(path, _rand((8, 8, 3)), quality=50)
    assert path.read_bytes() != first
    assert _leftovers(path.parent) == []
    assert cv2.imread(str(path)).shape == (8, 8, 3)


def test_failed_encode_leaves_old_file(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    path.write_bytes(b"old contents")
    monkeypatch.setattr(cv2, "imencode", lambda *a, **k: (False, None))
    with pytest.raises(ImageWriteError, match=r"keep\.png: cannot encode PNG"):
        write_image(path, _rand((4, 4, 3)))
    assert path.read_bytes() == b"old contents" and _leftovers(tmp_path) == []


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_disk_step_cleans_up(tmp_path, monkeypatch, failing):
    path = tmp_path / "keep.png"
    path.write_bytes(b"old contents")

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(imageio.os, failing, boom)
    with pytest.raises(ImageWriteError, match=r"keep\.png: cannot write it \(no space left"):
        write_image(path, _rand((4, 4, 3)))
    monkeypatch.undo()
    assert path.read_bytes() == b"old contents" and _leftovers(tmp_path) == []


def test_write_format_rules(tmp_path):
    deep = (_asymmetric().astype(np.int64) * 257 + 100).clip(0, 65535).astype(np.uint16)  # +100: below 8-bit resolution
    write_image(tmp_path / "d.jpg", deep, quality=100)  # JPEG holds 8 bits: converted
    back = cv2.imread(str(tmp_path / "d.jpg"))
    assert np.abs(back.astype(int) - _asymmetric()).max() <= 8

    with pytest.raises(ImageWriteError, match="JPEG cannot store transparency"):
        write_image(tmp_path / "a.jpg", _rand((6, 6, 4)))
    with pytest.raises(ImageWriteError, match="uint8 or uint16"):
        write_image(tmp_path / "f.png", np.zeros((6, 6, 3), np.float32))
    with pytest.raises(ImageWriteError, match="cannot write .xyz"):
        write_image(tmp_path / "f.xyz", _rand((6, 6, 3)))
    with pytest.raises(ImageWriteError, match="shape"):
        write_image(tmp_path / "f.png", _rand((6, 6, 2)))
    (tmp_path / "isdir.png").mkdir()
    with pytest.raises(ImageWriteError, match="folder"):
        write_image(tmp_path / "isdir.png", _rand((6, 6, 3)))
    # ext overrides the name's extension
    write_image(tmp_path / "named.dat", _rand((6, 6, 3)), ext="png")
    assert (tmp_path / "named.dat").read_bytes()[:4] == b"\x89PNG"
    assert _leftovers(tmp_path) == []


def test_choose_output_ext(tmp_path):
    write_image(tmp_path / "a.jpg", _rand((4, 4, 3)))
    write_image(tmp_path / "b.png", _rand((4, 4, 4)))
    Image.fromarray(_rand((4, 4, 3))).save(tmp_path / "c.gif")
    Image.fromarray(_rand((4, 4, 4)), "RGBA").save(tmp_path / "d.webp", lossless=True)
    assert choose_output_ext(read_image(tmp_path / "a.jpg")) == ".jpg"
    assert choose_output_ext(read_image(tmp_path / "b.png")) == ".png"
    assert choose_output_ext(read_image(tmp_path / "c.gif")) == ".png"
    assert choose_output_ext(read_image(tmp_path / "d.webp")) == ".webp"
    assert choose_output_ext(read_image(tmp_path / "a.jpg"), "PNG") == ".png"


# ---------------------------------------------------------------------------------------------
# helpers


def test_float_helpers_round_trip_exactly():
    all8 = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(from_float01(to_float01(all8), 8), all8)
    all16 = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    np.testing.assert_array_equal(from_float01(to_float01(all16), 16), all16)
    np.testing.assert_array_equal(from_float01(np.array([-0.5, 1.5, 0.5]), 8), [0, 255, 128])
    np.testing.assert_array_equal(convert_bit_depth(convert_bit_depth(all8, 16), 8), all8)
    assert convert_bit_depth(np.array([255], np.uint8), 16)[0] == 65535
    with pytest.raises(TypeError):
        to_float01(np.zeros(3, np.int64))


def test_from_pipeline_upscaled_with_alpha(tmp_path):
    rgba = _rand((5, 6, 4))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    up = cv2.resize(img.pixels, (24, 20), interpolation=cv2.INTER_NEAREST)
    out = from_pipeline(up, img)
    assert out.shape == (20, 24, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 3], cv2.resize(rgba[:, :, 3], (24, 20), interpolation=cv2.INTER_LINEAR))
    given = np.full((20, 24), 128, np.uint8)  # the pipeline upscaled the alpha itself: that one is kept
    assert (from_pipeline(np.dstack([up, given]), img)[:, :, 3] == 128).all()
    with pytest.raises(ValueError):
        from_pipeline(up[:, :, :2], img)


# ---------------------------------------------------------------------------------------------
# inputs


def test_list_images(tmp_path):
    for name in ["b.JPG", "a.png", "c.TiFF", ".hidden.png", "notes.txt", "d.webp"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    (tmp_path / "sub.png" / "e.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.TiFF", "d.webp"]
    assert list_images(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]  # a file is taken as given
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")


def test_real_photos_match_cv2(shared_data):
    for path in sorted((shared_data / "photos").iterdir())[:3]:
        img = read_image(path)
        np.testing.assert_array_equal(img.pixels, cv2.imread(str(path)), err_msg=str(path))


def test_corrupted_files_never_raise_anything_else(tmp_path):
    """Small fixed-seed fuzz: flipped bytes, cuts and overwritten headers in several formats."""
    rng = np.random.default_rng(1)
    base = _rand((24, 32, 3))
    seeds = [cv2.imencode(ext, base)[1].tobytes() for ext in (".png", ".jpg", ".tiff", ".webp", ".bmp")]
    seeds.append(cv2.imencode(".png", base.astype(np.uint16) * 257)[1].tobytes())
    outcomes = set()
    for i in range(120):
        data = bytearray(seeds[i % len(seeds)])
        if i % 3 == 0:
            for pos in rng.integers(0, len(data), 4):
                data[pos] = rng.integers(0, 256)
        elif i % 3 == 1:
            data = data[: rng.integers(1, len(data))]
        else:
            pos = int(rng.integers(8, 48))
            data[pos : pos + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        path = _write(tmp_path / f"fuzz{i}.img", bytes(data))
        try:
            img = read_image(path, max_pixels=100_000)  # keeps lying headers cheap
            assert img.pixels.ndim == 3 and img.pixels.shape[2] == 3
            outcomes.add("ok")
        except ImageReadError as err:
            assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
            outcomes.add("error")
    assert outcomes == {"ok", "error"}



# ---------------------------------------------------------------------------------------------
# JPEGs whose data ends long before their declared size (issue 6, finding 3)


def _jpeg_bytes(img: np.ndarray, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", **save)
    return buf.getvalue()


def _sof_size_at(data: bytes) -> int:
    """Offset of the height field in the first SOF segment, found by walking segment lengths."""
    pos = 2
    while True:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2 : pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return pos + 5
        pos += 2 + length


def _lying_jpeg(size=(9000, 9000), keep_eoi=True) -> bytes:
    """The reported case: a small valid JPEG whose frame header is patched to claim 9000x9000."""
    data = bytearray(_jpeg_bytes(_asymmetric(16, 16), quality=50))
    at = _sof_size_at(bytes(data))
    data[at : at + 4] = struct.pack(">HH", size[1], size[0])
    return bytes(data if keep_eoi else data[:-2])


def _no_decoding(monkeypatch):
    def load(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", load)
    monkeypatch.setattr(Image.Image, "load", load)
    monkeypatch.setattr(imageio.cv2, "imdecode", load)


@pytest.mark.parametrize("keep_eoi", [True, False])
def test_jpeg_declaring_9000x9000_in_600_bytes_is_refused_before_decoding(tmp_path, monkeypatch, keep_eoi):
    # With its EOI the file used to decode "fine" to a 9000x9000 grey image (243 MB, 5.7 GB RSS in
    # the pipeline, an 18000x18000 output, exit 0).
    path = _write(tmp_path / "liar.jpg", _lying_jpeg(keep_eoi=keep_eoi))
    size = path.stat().st_size
    assert size < 700
    _no_decoding(monkeypatch)  # refused on the bytes alone: no 9000x9000 buffer is ever made
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert str(err.value) == f"{path}: truncated or corrupt JPEG: declares 9000x9000 but holds {size} bytes"


def test_jpeg_data_check_walks_segments_and_counts_only_scan_data(tmp_path, monkeypatch):
    # 9000x9000 needs >= 158 kB of scan data. Padding the liar with 190 kB of comments after its
    # scan (where progressive files keep tables between scans) must not make it pass, and a fake
    # EOI and SOF inside a comment before the frame header must not be taken for markers.
    comment = b"\xff\xfe" + struct.pack(">H", 65002) + b"\xff\xd9\xff\xc0" + bytes(64996)
    data = _lying_jpeg()
    padded = data[:2] + comment + data[2:-2] + comment * 3 + data[-2:]
    path = _write(tmp_path / "com.jpg", padded)
    _no_decoding(monkeypatch)
    with pytest.raises(ImageReadError, match="declares 9000x9000"):
        read_image(path)


@pytest.mark.parametrize("save", [
    dict(quality=1, optimize=True),
    dict(quality=1, optimize=True, progressive=True),
    dict(quality=1, subsampling=2, progressive=True),
    dict(quality=90, subsampling=0),
], ids=["optimized", "progressive", "progressive-420", "444"])
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_smallest_valid_jpegs_pass_the_data_check(tmp_path, save, mode):
    # A flat image is the cheapest a JPEG can be (one short code per block): the bound must let it
    # through, in every layout; so must bytes after EOI and a comment holding a fake EOI.
    flat = Image.new(mode, (1000, 700), {"RGB": (90, 140, 200), "L": 128, "CMYK": (10, 50, 90, 0)}[mode])
    buf = io.BytesIO()
    flat.save(buf, "JPEG", **save)
    data = buf.getvalue()
    assert len(data) < 1000 * 700 / 16  # small indeed: far under one byte per 8x8 block of each channel
    comment = b"\xff\xfe\x00\x06\xff\xd9\x00\x00"
    path = _write(tmp_path / "flat.jpg", data[:2] + comment + data[2:] + b"trailer after EOI")
    img = read_image(path)
    with Image.open(io.BytesIO(data)) as im:
        expected = np.asarray(im.convert("RGB"))[:, :, ::-1]
    np.testing.assert_array_equal(img.pixels, expected)


def test_jpeg_with_restart_markers_passes(tmp_path):
    flat = np.full((300, 400, 3), 200, np.uint8)
    ok, buf = cv2.imencode(".jpg", flat, [cv2.IMWRITE_JPEG_QUALITY, 1, cv2.IMWRITE_JPEG_RST_INTERVAL, 1])
    path = _write(tmp_path / "rst.jpg", buf.tobytes())
    np.testing.assert_array_equal(read_image(path).pixels, cv2.imread(str(path)))


def test_arithmetic_coded_jpeg_is_not_judged_by_the_huffman_bound():
    # SOF9 (arithmetic coding) can code a flat image in almost nothing: no bound, the decoder decides.
    data = bytearray(_lying_jpeg())
    at = _sof_size_at(bytes(data))
    data[at - 4] = 0xC9
    assert headers.jpeg_shortfall(io.BytesIO(bytes(data))) is None
    data[at - 4] = 0xC2  # the same header as progressive Huffman: refused
    assert headers.jpeg_shortfall(io.BytesIO(bytes(data))) == (9000, 9000)


# ---------------------------------------------------------------------------------------------
# sizes before decoding, and the output bound


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_peek_size_reads_the_header_only_and_turns_with_exif(tmp_path, monkeypatch, orientation):
    path = tmp_path / "o.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_asymmetric(24, 40)).save(path, exif=exif)
    expected = read_image(path).pixels.shape[1::-1]
    assert expected == ((24, 40) if orientation >= 5 else (40, 24))
    _no_decoding(monkeypatch)
    assert peek_size(path) == expected


def test_peek_size_of_a_bomb_costs_nothing(tmp_path, monkeypatch):
    path = _bomb(tmp_path)
    _no_decoding(monkeypatch)
    assert peek_size(path) == (30000, 30000)  # no pixel limit here: check_output_pixels decides
    with pytest.raises(ImageReadError, match="not an image"):
        peek_size(_write(tmp_path / "notes.png", b"hello" * 20))
    with pytest.raises(ImageReadError, match="file not found"):
        peek_size(tmp_path / "missing.png")


def _png_with_late_exif(data16: np.ndarray, orientation: int) -> bytes:
    """A 16-bit RGB PNG whose eXIf chunk comes after the pixel data (allowed by the PNG spec)."""
    png = cv2.imencode(".png", data16)[1].tobytes()
    exif = Image.Exif()
    exif[0x0112] = orientation
    raw = exif.tobytes()
    raw = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    chunk = struct.pack(">I", len(raw)) + b"eXIf" + raw + struct.pack(">I", zlib.crc32(b"eXIf" + raw))
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


@pytest.mark.parametrize("depth", [8, 16])
def test_late_exif_orientation_in_png_is_applied_at_any_depth(tmp_path, depth):
    # The 16-bit path (OpenCV) used to ignore an eXIf chunk after IDAT while the 8-bit path
    # (Pillow) applied it: the same photo came out turned or not depending on its bit depth.
    data = _rand((6, 10, 3), np.uint16 if depth == 16 else np.uint8)
    path = _write(tmp_path / "late.png", _png_with_late_exif(data, 6))
    img = read_image(path)
    assert img.orientation == 6 and img.pixels.shape == (10, 6, 3)
    np.testing.assert_array_equal(img.pixels, np.rot90(data, k=-1))
    assert peek_size(path) == (6, 10)


def test_check_output_pixels():
    check_output_pixels(160, 200, 2, 100_000_000)
    check_output_pixels(160, 200, 100, None)  # no limit
    check_output_pixels(10_000, 10_000, 1, 100_000_000)  # exactly at the limit
    with pytest.raises(OutputTooLargeError) as err:
        check_output_pixels(160, 200, 100, 100_000_000)
    assert str(err.value) == ("160x200 at scale 100 would give 16000x20000 = 320.0 MP, over the output "
                              "limit of 100.0 MP (use a smaller scale)")
    assert isinstance(err.value, ValueError) and err.value.path is None
    with pytest.raises(OutputTooLargeError, match=r"^photo\.jpg: 9000x9000 at scale 2 would give 18000x18000"):
        check_output_pixels(9000, 9000, 2, 100_000_000, path="photo.jpg")
    for scale in (float("nan"), float("inf"), 0, -2, "2x"):
        with pytest.raises(ValueError, match="scale must be"):
            check_output_pixels(160, 200, scale, None)
    with pytest.raises(ValueError, match=r"turns the 160x200 image into 0x0 pixels"):
        check_output_pixels(160, 200, 0.001, None)
    assert imageio.scaled_size(161, 201, 1.5) == (241, 301)  # rounded down, as the upsampler does


# ---------------------------------------------------------------------------------------------
# frames, links and folders (issue 6, finding 5)


def _frames(n, size=(8, 6)):
    return [Image.fromarray(np.full((size[1], size[0], 3), 40 * i + 20, np.uint8)) for i in range(n)]


@pytest.mark.parametrize("ext, note", [
    (".gif", "animated GIF with 3 frames: only the first is restored"),
    (".png", "animated PNG with 3 frames: only the first is restored"),
    (".webp", "animated WebP with 3 frames: only the first is restored"),
    (".tif", "multi-page TIFF with 3 pages: only the first is restored"),
])
def test_multi_frame_files_give_the_first_frame_and_a_note(tmp_path, ext, note):
    frames = _frames(3)
    path = tmp_path / f"anim{ext}"
    extra = {".webp": dict(lossless=True)}.get(ext, {})
    frames[0].save(path, save_all=True, append_images=frames[1:], **extra)
    img = read_image(path)
    assert img.notes == [note]
    np.testing.assert_array_equal(img.pixels, np.asarray(frames[0])[:, :, ::-1])
    single = tmp_path / f"one{ext}"
    frames[0].save(single, **extra)
    assert read_image(single).notes == []


def test_16bit_multi_page_tiff_notes_too(tmp_path):
    pages = [_rand((5, 7, 3), np.uint16) for _ in range(2)]
    path = tmp_path / "deep.tif"
    assert cv2.imwritemulti(str(path), pages)
    img = read_image(path)
    assert img.bit_depth == 16 and img.notes == ["multi-page TIFF with 2 pages: only the first is restored"]
    np.testing.assert_array_equal(img.pixels, pages[0])


def _links(tmp_path):
    (tmp_path / "loop_a.jpg").symlink_to(tmp_path / "loop_b.jpg")
    (tmp_path / "loop_b.jpg").symlink_to(tmp_path / "loop_a.jpg")
    (tmp_path / "broken.png").symlink_to(tmp_path / "gone.png")


def test_links_are_named_for_what_they_are(tmp_path):
    _links(tmp_path)
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "loop_a.jpg")
    assert str(err.value) == f"{tmp_path / 'loop_a.jpg'}: is a symbolic link loop"
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / "broken.png")
    assert str(err.value) == f"{tmp_path / 'broken.png'}: is a broken symbolic link"
    # as the -i argument: it used to say "does not exist" / "no such file or folder"
    with pytest.raises(ImageReadError, match=r"loop_a\.jpg: is a symbolic link loop$"):
        scan_inputs(tmp_path / "loop_a.jpg")
    with pytest.raises(FileNotFoundError, match="is a symbolic link loop"):
        list_images(tmp_path / "loop_a.jpg")
    with pytest.raises(FileNotFoundError, match="is a broken symbolic link"):
        list_images(tmp_path / "broken.png")
    with pytest.raises(ImageReadError, match="no such file or folder"):
        scan_inputs(tmp_path / "missing")


def test_scan_inputs_says_what_it_passes_over(tmp_path, monkeypatch):
    good = [write_image(tmp_path / name, _rand((4, 4, 3))) for name in ("a.png", "c.JPG")]
    _links(tmp_path)
    (tmp_path / "sub").mkdir()
    write_image(tmp_path / "sub" / "deeper.png", _rand((4, 4, 3)))
    (tmp_path / "IMG_1.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    os.mkfifo(tmp_path / "pipe.png")
    write_image(tmp_path / "locked.png", _rand((4, 4, 3)))
    for name in ("notes.txt", "a.png.xmp", ".hidden.png", "IMG_1.AAE"):  # passed over silently
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "ok_link.png").symlink_to(good[0])
    real_access = os.access
    monkeypatch.setattr(imageio.os, "access", lambda p, mode: Path(p).name != "locked.png" and real_access(p, mode))

    scan = scan_inputs(tmp_path)
    assert isinstance(scan, InputScan)
    assert [p.name for p in scan.files] == ["a.png", "c.JPG", "ok_link.png"]
    assert [(p.name, why) for p, why in scan.skipped] == [
        ("IMG_1.HEIC", "HEIC/HEIF photos are not supported (convert them to JPEG or PNG first)"),
        ("broken.png", "is a broken symbolic link"),
        ("locked.png", "cannot be read (permission denied)"),
        ("loop_a.jpg", "is a symbolic link loop"),
        ("loop_b.jpg", "is a symbolic link loop"),
        ("pipe.png", "not a regular file"),
        ("sub", "subfolder (folders are not searched recursively)"),
    ]
    assert list_images(tmp_path) == scan.files
    assert scan_inputs(good[1]).files == [good[1]] and scan_inputs(good[1]).skipped == []


# ---------------------------------------------------------------------------------------------
# the image contract: to_pipeline / from_pipeline / is_grey


def test_to_pipeline_gives_bgr_or_bgra_in_the_inputs_depth(tmp_path):
    rgba = _rand((5, 6, 4), np.uint16)
    img = read_image(write_image(tmp_path / "a.png", rgba))
    arr = imageio.to_pipeline(img)
    assert arr.shape == (5, 6, 4) and arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED))
    plain = read_image(write_image(tmp_path / "b.png", rgba[:, :, :3]))
    assert imageio.to_pipeline(plain) is plain.pixels


def test_is_grey_tolerates_two_levels_scaled_for_16_bit():
    base = _rand((6, 7))
    near = np.dstack([base, base, np.clip(base.astype(int) + 2, 0, 255).astype(np.uint8)])
    far = np.dstack([base, base, np.clip(base.astype(int) + 3, 0, 255).astype(np.uint8)])
    assert is_grey(base) and is_grey(base[:, :, None]) and is_grey(near)
    assert not is_grey(far)
    assert is_grey(near.astype(np.uint16) * 257) and not is_grey(far.astype(np.uint16) * 257)


def test_from_pipeline_keeps_the_kind_of_an_input_array():
    grey = _rand((4, 5))
    # (H, W, 1) is what a paste without faces gives for a grey background
    assert from_pipeline(grey[:, :, None], grey).shape == (4, 5)
    assert from_pipeline(grey[:, :, None], grey, keep_grey=False).shape == (4, 5, 3)
    colour_grey = np.dstack([grey] * 3)
    tinted = colour_grey.copy()
    tinted[:, :, 2] = 255 - tinted[:, :, 2]  # the network's colours on a grey photo
    out = from_pipeline(tinted, colour_grey)
    assert out.shape == (4, 5, 3) and is_grey(out) and (out[:, :, 0] == out[:, :, 1]).all()
    np.testing.assert_array_equal(from_pipeline(tinted, colour_grey, keep_grey=False), tinted)
    sixteen = np.dstack([_rand((4, 5, 3), np.uint16), _rand((4, 5), np.uint16)])
    eight = convert_bit_depth(sixteen, 8)
    np.testing.assert_array_equal(from_pipeline(eight, sixteen), convert_bit_depth(eight, 16))  # 16 stays 16
    no_alpha = from_pipeline(eight[:, :, :3], sixteen)  # a result without alpha gets the input's back
    assert no_alpha.shape == (4, 5, 4)
    np.testing.assert_array_equal(no_alpha[:, :, 3], sixteen[:, :, 3])
    assert from_pipeline(eight, sixteen[:, :, :3]).shape == (4, 5, 3)  # no alpha in, none out
