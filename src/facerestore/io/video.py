"""Video files: recognise, check, decode and encode them with PyAV (the ``video`` extra).

PyAV's wheels bundle FFmpeg, so no system FFmpeg is needed. It is imported only when a video is
actually read or written: ``pip install "facerestore[video]"`` adds it.

What a damaged file does with FFmpeg (shared/specs/reliability.md): an MP4 cut before its index
fails to open; one with its index first ("faststart") opens, claims all its frames, and then
decodes fewer, often with no error at all. So a file is checked before decoding (a video stream,
its size, length and frame count within limits), and the frames decoded are counted against the
index: fewer is an error, never a shorter output. A container without a frame index (Matroska,
WebM) is held to its video's duration instead: frames that stop well short of it are an error too.
"""
from __future__ import annotations

import errno
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import av

__all__ = [
    "VIDEO_EXTENSIONS", "VideoError", "VideoReadError", "VideoWriteError", "VideoInfo", "VideoFrame",
    "EncodeSettings", "VideoReader", "VideoWriter", "require_av", "sniff_video", "is_video", "list_media",
    "split_videos", "folder_videos",
    "probe",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".wmv", ".asf", ".flv",
                              ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".3gp", ".3g2", ".ogv"})

# Output container by file extension (what ``av.open(..., format=)`` calls it).
CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                     ".avi": "avi"}

# Friendly codec names -> FFmpeg encoders, and which of them take a CRF quality.
ENCODERS = {"h264": "libx264", "x264": "libx264", "avc": "libx264", "h265": "libx265", "hevc": "libx265",
            "x265": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "ffv1": "ffv1"}
CRF_ENCODERS = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "libsvtav1": 63}  # encoder -> max CRF


class VideoError(Exception):
    """A video that cannot be read or written; the message names the file and what to do."""

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class VideoReadError(VideoError):
    pass


class VideoWriteError(VideoError):
    pass


def require_av():
    """The ``av`` module, or an ImportError saying how to install it."""
    try:
        import av
    except ImportError:
        raise ImportError('video needs PyAV: pip install "facerestore[video]" (or pip install av)') from None
    return av


# --------------------------------------------------------------------------- recognising videos


def sniff_video(head: bytes) -> str | None:
    """The container a file's first bytes announce (``mp4``, ``matroska``, ``avi``, ...) or None.

    Images (JPEG, PNG, GIF, WebP, TIFF, ...) are never taken for videos; an animated GIF or WebP
    is an image here. Ogg is a video only if its first page names a video codec (Theora).
    """
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        # HEIF/AVIF still images share the ISO box layout; their brands say so.
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis", b"heim", b"heis"):
            return None
        return "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip") and head[:4] != b"\0\0\0\0":
        return "mov"  # QuickTime files without an ftyp box
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # also WebM
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "avi"
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return "asf"
    if head[:3] == b"FLV":
        return "flv"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if len(head) >= 377 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpegts"
    if len(head) >= 389 and head[4] == 0x47 and head[196] == 0x47 and head[388] == 0x47:
        return "mpegts"  # M2TS: 4-byte timestamp before each 188-byte packet
    if head[:4] == b"OggS" and b"theora" in head[:200]:
        return "ogg"
    return None


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP")


def _head(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(512)
    except OSError:
        return b""


def is_video(path: str | os.PathLike) -> bool:
    """True if the file's content is a video container (its extension does not matter)."""
    return sniff_video(_head(path)) is not None


def _video_input(path: Path) -> bool:
    """A video by content; or by its extension when its content is no known image either (a
    damaged video is then reported as such instead of being skipped)."""
    head = _head(path)
    if sniff_video(head) is not None:
        return True
    looks_like_image = head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    return path.suffix.lower() in VIDEO_EXTENSIONS and not looks_like_image


def split_videos(files: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """``(photos, videos)`` among input files: a file is a video if its content says so, or if
    its extension does and its content is no known image format (a damaged video is then
    reported as such rather than read as a photo)."""
    photos, videos = [], []
    for path in files:
        (videos if _video_input(Path(path)) else photos).append(path)
    return photos, videos


def folder_videos(folder: str | os.PathLike) -> list[Path]:
    """The videos directly in ``folder`` that have no image extension (those with one are
    already among the folder's images, and :func:`split_videos` sorts them out), recognised by
    content or by a video extension; sorted by name, hidden files skipped. [] for a file."""
    from .images import IMAGE_EXTENSIONS

    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        try:
            if entry.name.startswith(".") or entry.suffix.lower() in IMAGE_EXTENSIONS or not entry.is_file():
                continue
        except OSError:
            continue
        if _video_input(entry):
            found.append(entry)
    return found


def list_media(path: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``(images, videos)`` that a ``-i`` file or folder names (images as
    :func:`~facerestore.io.images.scan_inputs` finds them, videos by content)."""
    from .images import scan_inputs

    path = Path(path)
    photos, videos = split_videos(scan_inputs(path).files)
    return photos, sorted(videos + folder_videos(path), key=lambda p: p.name)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class VideoInfo:
    """What a video's headers say, checked before any frame is decoded."""

    path: Path
    width: int            # as displayed (after rotation)
    height: int
    rotation: int         # counter-clockwise degrees applied to stored frames for display
    rate: Fraction        # average frame rate
    time_base: Fraction
    frames: int | None    # from the index, when the container has one
    duration: float | None  # seconds
    audio: tuple[str, ...] = ()  # codec of each audio stream
    container: str = ""
    stream_index: int = 0     # of the video stream restored
    other_streams: int = 0    # streams not carried over (subtitles, data, cover pictures, more video)
    start: float = 0.0        # the video stream's start time, seconds
    duration_of_container: bool = False  # ``duration`` is the whole file's, not the video's own

    @property
    def expected_frames(self) -> int | None:
        """The frame count the file claims (index, else duration × rate), for progress bars."""
        if self.frames:
            return self.frames
        if self.duration and self.rate:
            return max(1, round(self.duration * float(self.rate)))
        return None


def _open_input(path: Path):
    av = require_av()
    if not path.exists():
        raise VideoReadError(path, "no such file")
    try:
        return av.open(str(path), "r")
    except av.error.FFmpegError as exc:
        raise VideoReadError(path, f"not a video FFmpeg can read, or damaged (truncated?): {_reason(exc)}") from None
    except OSError as exc:
        raise VideoReadError(path, f"cannot read it ({exc.strerror or exc})") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _stream_rotation(container, stream) -> int:
    """The display rotation of the video, from the first frame's display matrix (0 if none).

    PyAV reports it per frame; reading one frame here costs little and lets sizes be checked
    as displayed before the real decode starts.
    """
    try:
        for frame in container.decode(stream):
            return _round_rotation(frame.rotation)
    except Exception:  # a damaged first frame shows up again, as an error, when decoding for real
        return 0
    return 0


def _main_video_stream(container):
    """The clip's video stream: the first one that is not a cover picture (MP4/MKV files can
    carry album art as a one-frame 'attached picture' video stream)."""
    av = require_av()
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def _round_rotation(rotation: float | None) -> int:
    return int(round((rotation or 0) / 90.0)) % 4 * 90


def probe(path: str | os.PathLike, *, max_pixels: int | None = None, max_frames: int | None = None) -> VideoInfo:
    """Open a video, check what it claims, and return it; raises :class:`VideoReadError`.

    Refused before decoding: no video stream, a zero or over-``max_pixels`` frame size, a
    length of zero, more than ``max_frames`` frames.
    """
    path = Path(path)
    with _open_input(path) as container:
        stream = _main_video_stream(container)
        if stream is None:
            raise VideoReadError(path, "has no video stream")
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoReadError(path, "its video stream has no frame size (damaged?)")
        if max_pixels is not None and width * height > max_pixels:
            raise VideoReadError(path, f"frames of {width}x{height} are over the limit of {max_pixels / 1e6:g} MP "
                                       f"(raise --max-pixels)")
        frames = int(stream.frames or 0) or None
        duration, of_container = None, False
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif (tagged := _tagged_seconds(stream.metadata)) is not None:
            duration = tagged  # Matroska has no per-track duration but FFmpeg's muxer tags one
        elif container.duration is not None:
            duration, of_container = container.duration / 1_000_000, True
        if (frames is None and duration is not None and duration <= 0) or frames == 0:
            raise VideoReadError(path, "has no frames (empty or damaged)")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate or Fraction(25)
        time_base = stream.time_base or Fraction(1, 90000)
        expected = frames or (round(duration * float(rate)) if duration else None)
        if max_frames is not None and expected is not None and expected > max_frames:
            raise VideoReadError(path, f"has about {expected} frames, over the limit of {max_frames}")
        audio = tuple(s.codec_context.name for s in container.streams.audio)
        others = sum(1 for s in container.streams if s.type not in ("video", "audio")) + sum(
            1 for s in container.streams.video if s is not stream)
        rotation = _stream_rotation(container, stream)
        if rotation in (90, 270):
            width, height = height, width
        start = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        return VideoInfo(path, width, height, rotation, Fraction(rate), Fraction(time_base), frames, duration,
                         audio, container.format.name, stream.index, others, start, of_container)


def _tagged_seconds(metadata: dict) -> float | None:
    """A ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``, as FFmpeg and mkvmerge write per Matroska track)."""
    text = next((v for k, v in metadata.items() if k.upper().split("-")[0] == "DURATION"), None)
    try:
        hours, minutes, seconds = str(text).split(":")
        value = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame, upright (rotation applied), BGR uint8 as OpenCV holds images."""

    index: int
    pts: int          # in the stream's time base, strictly increasing
    time: float       # seconds
    image: np.ndarray


class VideoReader:
    """Decode a video's frames one at a time (bounded memory), upright, counting them.

    Iterating raises :class:`VideoReadError` when decoding fails part-way, when no frame
    comes out, or when fewer frames come out than the index lists, or (without an index) when
    they stop well short of the video's duration (a truncated file). When only the whole file's
    duration is known and it has audio (which may outlast the video), a shortfall is not an
    error: ``shortfall`` then says what was missing.
    """

    def __init__(self, path: str | os.PathLike, info: VideoInfo | None = None) -> None:
        self.path = Path(path)
        self.info = info or probe(self.path)
        self.decoded = 0
        self.shortfall: str | None = None

    def __iter__(self) -> Iterator[VideoFrame]:
        av = require_av()
        path, info = self.path, self.info
        step = max(1, round(1 / (float(info.rate) * float(info.time_base)))) if info.rate else 1
        last_pts = None
        with _open_input(path) as container:
            stream = container.streams[info.stream_index]
            stream.thread_type = "AUTO"
            frames = container.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except av.error.FFmpegError as exc:
                    raise VideoReadError(path, f"decoding failed after {self.decoded} frames (damaged or "
                                               f"truncated file): {_reason(exc)}") from None
                pts = frame.pts
                if pts is None:  # no timestamp: one nominal frame after the previous one
                    pts = 0 if last_pts is None else last_pts + step
                if last_pts is not None and pts <= last_pts:
                    pts = last_pts + 1  # encoders and muxers need strictly increasing timestamps
                last_pts = pts
                image = frame.to_ndarray(format="bgr24")
                k = _round_rotation(frame.rotation) // 90
                if k:
                    image = np.ascontiguousarray(np.rot90(image, k))
                yield VideoFrame(self.decoded, pts, float(pts * info.time_base), image)
                self.decoded += 1
        if self.decoded == 0 or last_pts is None:
            raise VideoReadError(path, "no frame could be decoded (damaged or truncated file)")
        if info.frames is not None and self.decoded < info.frames and self._ends_early(last_pts):
            raise VideoReadError(path, f"only {self.decoded} of its {info.frames} frames could be decoded "
                                       f"(truncated file?)")
        expected = info.expected_frames
        if info.frames is None and expected is not None and self.decoded < expected and self._ends_early(last_pts):
            problem = (f"only {self.decoded} of about {expected} frames could be decoded: they stop at "
                       f"{self._reached(last_pts):.2f} s of {info.duration:.2f} s")
            if info.duration_of_container and info.audio:
                self.shortfall = f"{problem} (the file's length, perhaps its audio's; truncated file?)"
            else:
                raise VideoReadError(path, f"{problem} (truncated file?)")

    def _reached(self, last_pts: int) -> float:
        """Seconds of video decoded, up to the end of the last frame, from the stream's start."""
        info = self.info
        frame = 1 / float(info.rate) if info.rate else 0.04
        return float(last_pts * info.time_base) + frame - info.start

    def _ends_early(self, last_pts: int) -> bool:
        """Whether decoding stopped well before the stream's stated end. Fewer frames than the
        index lists is normal for an MP4 trimmed by an edit list (its duration says so too); a
        truncated file keeps its full duration in the index but its frames stop short."""
        info = self.info
        if not info.duration:
            return True  # nothing to tell the two apart: trust the count
        frame = 1 / float(info.rate) if info.rate else 0.04
        return self._reached(last_pts) < info.duration - max(2 * frame, 0.02 * info.duration)


# --------------------------------------------------------------------------- writing


@dataclass
class EncodeSettings:
    """How the output video is encoded. Defaults: H.264 in MP4, yuv420p (plays everywhere),
    CRF 18 (visually near-lossless for x264), preset ``medium``."""

    codec: str = "h264"
    crf: float | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=dict)  # more encoder options, as FFmpeg names them

    @property
    def encoder(self) -> str:
        return ENCODERS.get(self.codec.lower(), self.codec)

    def encoder_options(self) -> dict[str, str]:
        opts: dict[str, str] = {}
        encoder = self.encoder
        if self.crf is not None and encoder in CRF_ENCODERS:
            opts["crf"] = f"{self.crf:g}"
            if encoder == "libvpx-vp9":
                opts["b"] = "0"  # constant quality mode
        if self.preset and encoder in ("libx264", "libx265"):
            opts["preset"] = self.preset
        if self.preset and encoder == "libsvtav1" and self.preset.isdigit():
            opts["preset"] = self.preset
        opts.update({str(k): str(v) for k, v in self.options.items()})
        return opts


def container_format(path: Path) -> str:
    fmt = CONTAINER_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise VideoWriteError(path, f"unknown video container '{path.suffix}'; use one of "
                                    f"{', '.join(sorted(CONTAINER_FORMATS))}")
    return fmt


class VideoWriter:
    """Encode frames into ``path`` and copy the source's audio packets in, interleaved.

    The audio is remuxed, never decoded: the same packets, bytes and timestamps. Video frames
    keep the source's timestamps (so variable frame rates stay as they were) and its average
    frame rate as the stream's rate. Use as a context manager; :meth:`close` flushes the encoder
    and the remaining audio. Raises :class:`VideoWriteError` (or :class:`VideoReadError` for a
    source whose audio is damaged).
    """

    def __init__(self, path: str | os.PathLike, source: VideoInfo, width: int, height: int,
                 settings: EncodeSettings | None = None, *, copy_audio: bool = True,
                 name: str | os.PathLike | None = None) -> None:
        av = require_av()
        self.path = Path(path)
        self.name = Path(name) if name is not None else self.path  # for messages: the user's target
        self.source = source
        self.settings = settings or EncodeSettings()
        fmt = container_format(self.name)
        self.audio_packets = 0
        self._audio_in = None
        self._pending = None  # the next audio packet, read but not yet muxed
        try:
            self._out = av.open(str(self.path), "w", format=fmt)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoWriteError(self.name, f"cannot create it: {_reason(exc)}") from None
        try:
            self._add_video(av, width, height)
            if copy_audio and source.audio:
                self._add_audio()
        except BaseException:
            self._out.close()
            self._close_audio()
            raise

    def _add_video(self, av, width: int, height: int) -> None:
        s = self.settings
        try:
            codec = av.codec.Codec(s.encoder, "w").canonical_name
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoWriteError(self.name, f"the encoder '{s.encoder}' is not available: {_reason(exc)}") from None
        if codec not in self._out.supported_codecs:
            raise VideoWriteError(self.name, f"a {self.name.suffix} file cannot hold {codec} video; choose another "
                                             f"codec (webm takes vp9 or av1) or container (mp4, mkv)")
        try:
            stream = self._out.add_stream(s.encoder, rate=self.source.rate, options=s.encoder_options())
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoWriteError(self.name, f"the encoder '{s.encoder}' is not available: {_reason(exc)}") from None
        stream.width, stream.height, stream.pix_fmt = width, height, s.pix_fmt
        stream.time_base = self.source.time_base
        stream.codec_context.time_base = self.source.time_base
        self._video = stream

    def _add_audio(self) -> None:
        supported = getattr(self._out, "supported_codecs", None)
        self._audio_in = _open_input(self.source.path)
        in_streams = list(self._audio_in.streams.audio)
        for s in in_streams:
            name = s.codec_context.name
            if supported is not None and name not in supported:
                raise VideoWriteError(self.name, f"its container cannot hold the {name} audio of the source; "
                                                 f"choose another container (mkv holds any audio)")
        self._audio_map = {s.index: self._out.add_stream_from_template(s) for s in in_streams}
        # Where each stream's audio should end (its header's duration): audio that stops well short
        # of it was cut off (a truncated file), even when the demuxer reports no error.
        self._audio_end = {s.index: (float((s.start_time or 0) * s.time_base), float(s.duration * s.time_base))
                           for s in in_streams if s.duration and s.time_base}
        self._audio_reached: dict[int, float] = {}
        self._audio_packets = self._audio_in.demux(*in_streams)

    def _next_audio(self):
        av = require_av()
        while self._pending is None and self._audio_in is not None:
            try:
                packet = next(self._audio_packets)
            except StopIteration:
                self._close_audio()
                return None
            except av.error.FFmpegError as exc:
                raise VideoReadError(self.source.path, f"reading its audio failed (damaged or truncated "
                                                       f"file): {_reason(exc)}") from None
            if packet.dts is None:  # demuxer's end-of-stream marker
                continue
            self._pending = packet
        return self._pending

    def _mux_audio_until(self, seconds: float) -> None:
        """Mux the source's audio packets that start before ``seconds``: audio keeps pace with the
        video, so neither the file layout nor the muxer's buffer depends on the clip's length."""
        while (packet := self._next_audio()) is not None:
            if packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                return
            self._pending = None
            index = packet.stream.index
            if packet.pts is not None and packet.time_base is not None:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                self._audio_reached[index] = max(end, self._audio_reached.get(index, -math.inf))
            packet.stream = self._audio_map[index]
            self._mux(packet)
            self.audio_packets += 1

    def _mux(self, packet) -> None:
        av = require_av()
        try:
            self._out.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoWriteError(self.name, f"writing failed: {_reason(exc)}") from None

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one BGR uint8 frame (of the writer's size) at ``pts`` (source time base)."""
        av = require_av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = pts
        frame.time_base = self.source.time_base
        try:
            packets = self._video.encode(frame)
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoWriteError(self.name, f"encoding failed: {_reason(exc)}") from None
        for packet in packets:
            self._mux(packet)
        self._mux_audio_until(float(pts * self.source.time_base))

    def close(self) -> None:
        """Flush the encoder and the rest of the audio, and finish the file."""
        av = require_av()
        try:
            for packet in self._video.encode(None):
                self._mux(packet)
            self._mux_audio_until(math.inf)
            self._check_audio_complete()
        except av.error.FFmpegError as exc:
            raise VideoWriteError(self.name, f"encoding failed: {_reason(exc)}") from None
        finally:
            self._finish()

    def _check_audio_complete(self) -> None:
        for index, (start, duration) in getattr(self, "_audio_end", {}).items():
            reached = self._audio_reached.get(index, start) - start
            if reached < duration - max(0.25, 0.02 * duration):
                raise VideoReadError(self.source.path, f"its audio stops at {reached:.2f} s of {duration:.2f} s "
                                                       f"(truncated file?)")

    def _finish(self) -> None:
        self._close_audio()
        out, self._out = self._out, None
        if out is not None:
            out.close()

    def _close_audio(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the file is being thrown away; just release it
            try:
                self._finish()
            except Exception:
                pass
