"""Restore the faces of a video: decode → track → restore (in batches) → paste back → encode.

Frames stream through: a few are held at a time (one network batch), whatever the clip's length.
The output is written to a hidden temporary file beside the target and renamed over it only when
complete, so a failure or Ctrl-C part-way leaves no half-written video (and an earlier result
under the same name untouched). Nothing here prints; progress and notes go to callbacks.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..face import align
from ..io.atomic import atomic_path
from ..io.images import from_pipeline
from ..io.video import (
    CONTAINER_FORMATS,
    EncodeSettings,
    VideoFrame,
    VideoReader,
    VideoWriteError,
    VideoWriter,
    probe,
    require_av,
)
from ..face.tracking import FaceTracker, Smoothing, TrackedFace, TrackerSettings
from .options import DEFAULT_MAX_PIXELS, OptionsError, check_weight

ProgressCallback = Callable[[int, "int | None"], None]


@dataclass
class VideoOptions:
    """Settings of a video run, beside the :class:`~facerestore.Restorer`'s own (model, upscale,
    detector, parser, background upsampler). Field names are the Python spellings of the flags."""

    # faces
    weight: float = 0.5
    only_center_face: bool = False
    smooth: bool = True
    detect_every: int = 1
    max_misses: int = 10
    min_cutoff: float = 0.5
    beta: float = 8.0
    batch_frames: int | None = None  # frames whose faces go through the network together; None: the
                                     # restorer's batch size (4 on CUDA, 1 on CPU)
    # output
    codec: str = "h264"
    crf: float | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "yuv420p"
    container: str = "mp4"           # for outputs named by the CLI; enhance_video uses dst's extension
    copy_audio: bool = True
    # limits, checked before decoding
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_output_pixels: int = 4 * DEFAULT_MAX_PIXELS
    max_frames: int | None = None

    def replace(self, **changes: Any) -> "VideoOptions":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown video option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def validate(self) -> "VideoOptions":

        try:
            check_weight(self.weight)
        except ValueError as exc:
            raise OptionsError("-w/--weight", str(exc)) from None
        for name, flag, low in (("detect_every", "--detect-every", 1), ("max_misses", "--max-misses", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OptionsError(flag, f"must be a whole number of at least {low}, got {value!r}")
        if self.batch_frames is not None and (not isinstance(self.batch_frames, int) or self.batch_frames < 1):
            raise OptionsError("batch_frames", f"must be a whole number of at least 1, got {self.batch_frames!r}")
        for name, flag in (("min_cutoff", "--smooth-cutoff"), ("beta", "--smooth-beta")):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
                    name == "min_cutoff" and value == 0):
                raise OptionsError(flag, f"must be a positive number, got {value!r}")
        if self.crf is not None and (not isinstance(self.crf, (int, float)) or not 0 <= self.crf <= 63):
            raise OptionsError("--crf", f"must be between 0 (lossless) and 51 (x264) or 63, got {self.crf!r}")
        if f".{self.container.lower().lstrip('.')}" not in CONTAINER_FORMATS:
            raise OptionsError("--video-ext", f"'{self.container}' is not one of "
                                              f"{', '.join(sorted(e[1:] for e in CONTAINER_FORMATS))}")
        if self.max_frames is not None and (not isinstance(self.max_frames, int) or self.max_frames < 1):
            raise OptionsError("--max-frames", f"must be a whole number of at least 1, got {self.max_frames!r}")
        return self

    def encode_settings(self) -> EncodeSettings:
        return EncodeSettings(codec=self.codec, crf=self.crf, preset=self.preset, pix_fmt=self.pix_fmt)

    def tracker_settings(self, eye_dist_threshold: float) -> TrackerSettings:
        return TrackerSettings(detect_every=self.detect_every, max_misses=self.max_misses, smooth=self.smooth,
                               smoothing=Smoothing(self.min_cutoff, self.beta),
                               eye_dist_threshold=eye_dist_threshold, only_center_face=self.only_center_face)


@dataclass
class VideoSummary:
    """What a video run did."""

    source: Path
    output: Path
    frames: int = 0
    faces_tracked: int = 0   # distinct faces (tracks) restored
    face_frames: int = 0     # faces restored, summed over frames
    seconds: float = 0.0
    audio_streams: int = 0
    audio_packets: int = 0
    size: tuple[int, int] = (0, 0)  # output width, height
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        faces = f"{self.faces_tracked} face{'s' if self.faces_tracked != 1 else ''} tracked"
        audio = (f"{self.audio_streams} audio stream{'s' if self.audio_streams != 1 else ''} copied"
                 if self.audio_streams else "no audio")
        return (f"{self.source.name}: {self.frames} frames, {faces} ({self.face_frames} restored), "
                f"{audio}, {self.seconds:.1f} s ({self.fps:.2f} frames/s) -> {self.output}")


def _even(img: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: repeat the last row / column when one is odd."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _chunks(frames: Iterable[VideoFrame], size: int) -> Iterator[list[VideoFrame]]:
    chunk: list[VideoFrame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _landmarks(faces: Sequence[TrackedFace]) -> np.ndarray:
    if not faces:
        return np.zeros((0, 5, 2), np.float32)
    return np.stack([f.landmarks for f in faces]).astype(np.float32)


def restore_frames(restorer, images: Sequence[np.ndarray], faces: Sequence[Sequence[TrackedFace]],
                   weight: float) -> list[np.ndarray]:
    """Restore several frames with given faces; the faces of all of them go through the network
    together (``restorer.batch_size`` at a time). One frame goes through ``restorer.enhance``
    itself; several take the same steps (align, restore, blend, paste back) with one network
    call for all (``tests/test_video.py`` checks the two give the same pixels)."""
    if len(images) == 1:
        return [restorer.enhance(images[0], landmarks=_landmarks(faces[0]), weight=weight, paste_back=True)[2]]
    crops: list[np.ndarray] = []
    affines: list[list[np.ndarray]] = []
    for image, frame_faces in zip(images, faces):
        frame_crops, frame_affines = align.align_faces(align.prepare_input(image), list(_landmarks(frame_faces)),
                                                       restorer.face_size)
        crops.extend(frame_crops)
        affines.append(frame_affines)
    restored = [restorer.blend(r, c, restorer.blend_weight(weight))
                for r, c in zip(restorer.restore_faces(crops, weight), crops)]
    out, start = [], 0
    for image, frame_affines in zip(images, affines):
        n = len(frame_affines)
        out.append(restorer.paste_back(image, restored[start:start + n], frame_affines))
        start += n
    return out


def restore_video(restorer, src: str | Path, dst: str | Path, options: VideoOptions | None = None, *,
                  on_progress: ProgressCallback | None = None, on_note: Callable[[str], None] | None = None,
                  on_faces: Callable[[int, list[TrackedFace]], None] | None = None,
                  **changes: Any) -> VideoSummary:
    """Restore every face of the video ``src`` into ``dst`` (its extension picks the container).

    ``options`` (or keyword ``changes`` to the defaults, e.g. ``smooth=False, crf=20``) set
    tracking, smoothing and encoding; the model, upscale, detector and paste mask are the
    ``restorer``'s. The output has the source's frame count, timestamps (so its frame rate and
    duration, variable rates included) and audio packets, upright if the source carried a
    rotation. ``on_progress(frames_done, frames_expected)`` follows the work; ``on_faces(index,
    faces)`` sees the faces restored in each frame. Raises
    :class:`~facerestore.io.video.VideoReadError` for a damaged or unreadable source (then
    nothing is written) and :class:`~facerestore.io.video.VideoWriteError` when the output cannot
    be written.
    """
    require_av()
    options = (options or VideoOptions()).replace(**changes).validate()
    src, dst = Path(src), Path(dst)
    start = time.perf_counter()
    if dst.exists() and dst.resolve() == src.resolve():
        raise VideoWriteError(dst, "would overwrite its input; choose another output")
    info = probe(src, max_pixels=int(options.max_pixels), max_frames=options.max_frames)
    out_h, out_w = align.upscaled_size(info.height, info.width, restorer.upscale)
    if out_w * out_h > options.max_output_pixels:
        raise VideoWriteError(dst, f"frames of {out_w}x{out_h} would be over the limit of "
                                   f"{options.max_output_pixels / 1e6:g} MP; lower -s or raise --max-output-pixels")
    summary = VideoSummary(src, dst, size=(out_w + out_w % 2, out_h + out_h % 2))
    if out_w % 2 or out_h % 2:  # yuv420p, the default, cannot hold odd sizes; every output is padded alike
        summary.notes.append(f"{src.name}: frames of {out_w}x{out_h} are written as {summary.size[0]}x"
                             f"{summary.size[1]} (last row/column repeated): {options.pix_fmt} video is "
                             f"written with even sizes")
    out_w, out_h = summary.size
    if info.other_streams:
        summary.notes.append(f"{src.name}: {info.other_streams} stream(s) other than its video and audio "
                             f"(subtitles, data, cover art) are not carried over")
    if info.rotation:
        summary.notes.append(f"{src.name}: rotated {info.rotation}° as its metadata asks; written upright")
    tracker = FaceTracker(restorer.detector, options.tracker_settings(restorer.eye_dist_threshold))
    batch = options.batch_frames or restorer.batch_size
    total = info.expected_frames
    reader = VideoReader(src, info)
    with atomic_path(dst, suffix=dst.suffix) as tmp:
        with VideoWriter(tmp, info, out_w, out_h, options.encode_settings(), copy_audio=options.copy_audio,
                         name=dst) as writer:
            for chunk in _chunks(reader, batch):
                faces = [tracker.update(frame.image, frame.time) for frame in chunk]
                outputs = restore_frames(restorer, [f.image for f in chunk], faces, options.weight)
                for frame, frame_faces, image in zip(chunk, faces, outputs):
                    if on_faces is not None:
                        on_faces(frame.index, frame_faces)
                    # the frame's kind (BGR uint8, as decoded): what the encoder takes
                    image = from_pipeline(image, frame.image, keep_grey=restorer.keep_grey)
                    writer.write(_even(image), frame.pts)
                    summary.frames += 1
                    summary.face_frames += len(frame_faces)
                    if on_progress is not None:
                        on_progress(summary.frames, total)
        summary.audio_streams = len(info.audio) if options.copy_audio else 0
        summary.audio_packets = writer.audio_packets
    if reader.shortfall:
        summary.notes.append(f"{src.name}: {reader.shortfall}")
    summary.faces_tracked = tracker.faces_tracked
    summary.seconds = time.perf_counter() - start
    if summary.face_frames == 0:
        summary.notes.append(f"no face found in {src.name}; its frames were upscaled only")
    if on_note is not None:
        for note in summary.notes:
            on_note(note)
    return summary

