"""Byte-level parsers of image headers: what the decoders would not tell us, or only after
allocating what the file claims. Nothing here decodes pixels; every function reads only as far
as it needs and returns "don't know" (None / an empty set / 1) for anything too odd to judge,
leaving the decoder to have its say. Used by :mod:`facerestore.io.images`.

  * `jpeg_shortfall`: a JPEG holding less scan data than its declared size needs (libjpeg would
    invent grey pixels for the rest).
  * `tiff_sample_formats`: a TIFF's SampleFormat (to name float TIFFs Pillow cannot open).
  * `png_chunks_fit`: every PNG chunk fits in the file (OpenCV allocates what a chunk claims).
  * `png_late_exif_orientation`: the EXIF orientation of an eXIf chunk after the pixel data.
"""
from __future__ import annotations

import math
import os
from typing import BinaryIO

from PIL import Image

__all__ = ["jpeg_min_entropy_bytes", "jpeg_shortfall", "png_chunks_fit", "png_late_exif_orientation",
           "tiff_sample_formats"]


def tiff_sample_formats(f: BinaryIO) -> set[int]:
    """The SampleFormat values (1 uint, 2 int, 3 float) of a TIFF's first image; empty when the
    tag is absent or the header cannot be parsed."""
    try:
        f.seek(0)
        head = f.read(16)
        order = "little" if head[:2] == b"II" else "big"
        big = int.from_bytes(head[2:4], order) == 43  # BigTIFF: 8-byte offsets, 20-byte entries
        offset = int.from_bytes(head[8:16] if big else head[4:8], order)
        f.seek(offset)
        count = int.from_bytes(f.read(8 if big else 2), order)
        entry_size = 20 if big else 12
        entries = f.read(min(count, 4096) * entry_size)
        if count == 0 or len(entries) < entry_size:
            return set()
        for i in range(0, len(entries) - entry_size + 1, entry_size):
            e = entries[i : i + entry_size]
            if int.from_bytes(e[0:2], order) != 339:  # SampleFormat
                continue
            n = int.from_bytes(e[4:12] if big else e[4:8], order)
            inline = e[12:20] if big else e[8:12]
            if n * 2 <= len(inline):
                raw = inline[: n * 2]
            else:
                f.seek(int.from_bytes(inline, order))
                raw = f.read(min(n, 64) * 2)
            return {int.from_bytes(raw[j : j + 2], order) for j in range(0, len(raw) - 1, 2)}
        return set()
    except (OSError, ValueError):
        return set()


# ----------------------------------------------------------------------------------------------
# JPEG: data that ends long before the declared size

_SOF_SEQUENTIAL = frozenset({0xC0, 0xC1, 0xC3})  # Huffman-coded baseline, extended, lossless
_SOF_PROGRESSIVE = frozenset({0xC2})
_SOF_OTHER = frozenset({0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})  # hierarchical, arithmetic


def jpeg_min_entropy_bytes(marker: int, width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """A lower bound on the entropy-coded bytes of a valid JPEG with this frame header.

    Huffman codes are at least 1 bit long, and every 8x8 block of a component carries at least
    one code for its DC coefficient (sequential: DC + end-of-block, >= 2 bits). A sequential scan
    codes every block of every component: the largest component bounds it. A progressive file
    codes each block's DC in a DC scan (AC scans can skip thousands of blocks in a few bits):
    take the smallest component, so that an odd scan script cannot be refused wrongly.
    Arithmetic coding (SOF9-SOF15) can code a flat image in almost nothing: no bound (0).
    """
    if marker not in _SOF_SEQUENTIAL and marker not in _SOF_PROGRESSIVE:
        return 0
    h_max = max(h for h, _ in sampling)
    v_max = max(v for _, v in sampling)
    blocks = [
        math.ceil(math.ceil(width * h / h_max) / 8) * math.ceil(math.ceil(height * v / v_max) / 8)
        for h, v in sampling
    ]
    return (max(blocks) if marker in _SOF_SEQUENTIAL else min(blocks)) // 8


class _Bytes:
    """The start of a file, read on demand in 64 kB steps (so a check reads only what it needs)."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.buf = bytearray()
        self.eof = False

    def have(self, n: int) -> bool:
        while len(self.buf) < n and not self.eof:
            chunk = self.f.read(max(n - len(self.buf), 1 << 16))
            if not chunk:
                self.eof = True
            self.buf += chunk
        return len(self.buf) >= n


def jpeg_shortfall(f: BinaryIO) -> tuple[int, int] | None:
    """(width, height) the frame header declares when the file holds fewer entropy-coded bytes
    than any valid JPEG of that size needs (see `jpeg_min_entropy_bytes`); None when it holds
    enough, or when the marker stream is too odd to judge (the decoder then has its say).

    Walks the marker segments by their lengths (an EXIF thumbnail inside APP1 is skipped whole),
    then counts scan data up to EOI, skipping the marker segments between progressive scans.
    Reads only as far as the bound, so a normal photo costs a few hundred kB of reading at most.
    """
    f.seek(0)
    data = _Bytes(f)
    buf = data.buf
    if not data.have(3) or buf[:2] != b"\xff\xd8":
        return None
    pos, frame = 2, None
    while True:  # header segments, up to the first SOS
        if not data.have(pos + 2):
            break  # the file ends inside the header: no scan data at all
        if buf[pos] != 0xFF:  # junk between segments: the decoder skips to the next 0xFF, as we do
            nxt = buf.find(b"\xff", pos)
            while nxt < 0 and data.have(len(buf) + 1):
                nxt = buf.find(b"\xff", max(pos, len(buf) - (1 << 16)))
            if nxt < 0:
                break
            pos = nxt
            continue
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        pos += 2
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            continue
        if marker == 0xD9 or not data.have(pos + 2):  # EOI before any scan, or the file ends
            break
        length = int.from_bytes(buf[pos : pos + 2], "big")
        if length < 2:
            return None
        if frame is None and marker in (_SOF_SEQUENTIAL | _SOF_PROGRESSIVE | _SOF_OTHER):
            if not data.have(pos + 8) or length < 8:
                return None
            height = int.from_bytes(buf[pos + 3 : pos + 5], "big")
            width = int.from_bytes(buf[pos + 5 : pos + 7], "big")
            n = buf[pos + 7]
            if not data.have(pos + 8 + 3 * n) or n == 0 or width == 0 or height == 0:
                return None  # height 0 is defined later (DNL): not ours to judge
            sampling = [(buf[pos + 9 + 3 * i] >> 4, buf[pos + 9 + 3 * i] & 15) for i in range(n)]
            if any(h == 0 or v == 0 for h, v in sampling):
                return None
            frame = (marker, width, height, sampling)
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
    if frame is None:
        return None
    marker, width, height, sampling = frame
    need = jpeg_min_entropy_bytes(marker, width, height, sampling)
    count = 0
    while count < need and data.have(pos + 1):
        nxt = buf.find(b"\xff", pos)
        if nxt < 0:
            count += len(buf) - pos
            pos = len(buf)
            continue
        count += nxt - pos
        pos = nxt
        if not data.have(pos + 2):
            count += 1
            break
        code = buf[pos + 1]
        if code == 0x00 or 0xD0 <= code <= 0xD7:  # a stuffed 0xFF byte, or a restart marker
            count += 2
            pos += 2
        elif code == 0xFF:  # fill byte
            count += 1
            pos += 1
        elif code == 0xD9:  # EOI: the image ends here, whatever follows
            break
        else:  # DHT, SOS, DNL, COM... between scans: skip the segment, it is not scan data
            if not data.have(pos + 4):
                break
            pos += 2 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
    return None if count >= need else (width, height)


def png_chunks_fit(data: bytes) -> bool:
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


def png_late_exif_orientation(f: BinaryIO) -> int:
    """The EXIF orientation of a PNG whose eXIf chunk Pillow has not seen yet (it may follow the
    pixel data), found by walking the chunk headers: no decoding."""
    try:
        f.seek(8)
        while True:
            head = f.read(8)
            if len(head) < 8 or head[4:8] == b"IEND":
                return 1
            length = int.from_bytes(head[:4], "big")
            if head[4:8] == b"eXIf":
                exif = Image.Exif()
                exif.load(f.read(min(length, 1 << 20)))
                value = int(exif.get(0x0112, 1))
                return value if 1 <= value <= 8 else 1
            f.seek(length + 4, os.SEEK_CUR)  # data and CRC
    except Exception:  # corrupt EXIF must not make a readable photo unreadable
        return 1
