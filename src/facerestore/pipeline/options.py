"""Every setting of a restoration run, with its default, in one place, validated once.

The CLI, the web service, video jobs and Python callers all fill a :class:`RestoreOptions`;
:meth:`RestoreOptions.validate` runs before any model is loaded or any file is read, so a bad
value fails the whole run at once with a message naming the option, instead of failing every
file of a batch. Nothing below the CLI knows argparse.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["OptionsError", "RestoreOptions", "model_for_version", "check_weight", "DEFAULT_MAX_PIXELS",
           "MAX_UPSCALE"]

DEFAULT_MAX_PIXELS = 100_000_000
# The pasted image is built in memory at full size; 16x is already 256 output pixels per input pixel.
MAX_UPSCALE = 16.0
OFFICIAL_VERSIONS = ("1", "1.2", "1.3", "1.4", "RestoreFormer")
OutputExt = Literal["auto", "jpg", "png"]


class OptionsError(ValueError):
    """A setting that cannot work; ``option`` names it as the user spelled it (CLI flag or field)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(f"{option}: {message}")


def check_weight(weight: object) -> float:
    """``weight`` as a float in [0, 1], or a ValueError that says what is wrong."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):  # numpy scalars are Real too
        raise ValueError(f"weight must be a number between 0 and 1, got {weight!r}")
    if not 0 <= float(weight) <= 1:  # also refuses nan
        raise ValueError(f"weight must be between 0 and 1, got {weight}")
    return float(weight)


def model_for_version(version: str) -> str:
    """The zoo name of an official ``-v`` value: ``1.4`` -> ``v1.4``, ``RestoreFormer`` as is."""
    version = str(version).strip()
    if version.lower() == "restoreformer":
        return "RestoreFormer"
    if version.lstrip("v") not in OFFICIAL_VERSIONS:
        raise OptionsError("-v/--version", f"unknown version '{version}'; choose one of "
                                           f"{', '.join(OFFICIAL_VERSIONS)} (or give --model)")
    return version if version.startswith("v") else f"v{version}"


@dataclass
class RestoreOptions:
    """Settings of a restoration run. Field names are the Python spellings of the CLI flags.

    Models: ``model`` is a zoo name (``v1.4``), a weights file, or a loaded module;
    ``bg_upsampler`` is ``None`` (Lanczos resize), ``"realesrgan"`` (the official behaviour:
    Real-ESRGAN x2 on CUDA, a resize elsewhere), or a zoo name / file used on any device.
    """

    # models
    model: Any = "v1.4"
    bg_upsampler: Any = None
    bg_tile: int = 400
    detector: Any = "auto"
    parser: Any = "parsenet"
    device: str = "cpu"
    allow_download: bool = True
    # what to restore and how
    upscale: float = 2.0
    weight: float = 0.5
    only_center_face: bool = False
    aligned: bool = False
    seed: int | None = None
    batch_size: int | None = None  # faces per network call; None: by free memory on GPUs, 1 on CPU
    half: bool = False  # face network in fp16 (CUDA) / bf16 (CPU, MPS); fp32 gives the official pixels
    # the engine every network runs on: auto (the fastest installed, per device and network;
    # PyTorch without the extras), torch, onnxruntime, openvino. $FACERESTORE_BACKEND sets the default.
    backend: str | None = dataclasses.field(default_factory=lambda: default_backend())
    eye_dist_threshold: float = 5.0
    keep_grey: bool = True
    # control and trust (issue 10)
    color_match: bool = False  # match the restored face's Lab mean/std to the input face's
    det_threshold: float | None = None  # detector score cut-off; None: the detector's own (0.97)
    min_face: int | None = None  # drop faces whose box is smaller than this (pixels, shorter side)
    landmark_check: bool = True  # drop detections whose five points cannot be a face
    # None/"none": no identity scores (the default here: a web or video worker need not pay for
    # them; the CLI asks for "auto"); "auto": ArcFace if its weights are already on disk (never
    # downloads), else one note; a zoo name or file: that network (downloaded if allowed).
    identity_model: Any = None
    min_identity: float | None = None  # below this identity score the input face is kept
    identity_fallback: Literal["input", "lower"] = "input"  # or the highest lower weight that passes
    report: Path | None = None  # a JSON record of the run (see docs/report-schema.json)
    # outputs
    suffix: str | None = None
    ext: OutputExt = "auto"
    save_faces: bool = True  # cropped_faces/, restored_faces/, cmp/ as the official layout
    # limits: inputs are refused before decoding, outputs before any work
    # Counts of pixels; a float such as 1e8 from the command line is taken as it is.
    max_pixels: int | float = DEFAULT_MAX_PIXELS
    max_output_pixels: int | float = 4 * DEFAULT_MAX_PIXELS

    def replace(self, **changes: Any) -> RestoreOptions:
        """A copy with ``changes`` (field names); a name that is no field is a TypeError naming it."""
        unknown = sorted(set(changes) - FIELD_NAMES)
        if unknown:
            raise TypeError(f"unknown restore option(s): {', '.join(unknown)}; the options are the fields of "
                            "RestoreOptions (model, upscale, weight, detector, min_face, identity_model, ...)")
        return dataclasses.replace(self, **changes)

    def validate(self) -> RestoreOptions:
        """Check every value; raise :class:`OptionsError` naming the first bad one. Returns self.

        The one place where ``"none"`` is read: ``bg_upsampler``, ``parser`` and ``identity_model``
        given as ``"none"`` (any case) become ``None`` here, so nothing after this compares strings."""
        for name in _NONE_MEANS_OFF:
            if _is_off(getattr(self, name)):
                setattr(self, name, None)
        if self.backend is None:  # no engine asked for: the networks as loaded, on PyTorch
            self.backend = "torch"
        _number("-s/--upscale", self.upscale, low=1.0, high=MAX_UPSCALE)
        _number("-w/--weight", self.weight, low=0.0, high=1.0)
        _integer("--bg_tile", self.bg_tile, low=0)
        if 0 < self.bg_tile < 32:
            raise OptionsError("--bg_tile", f"{self.bg_tile} is too small to tile with (use 0 for no "
                                            "tiling, or 32 and more)")
        _number("--max-pixels", self.max_pixels, low=1)
        _number("--max-output-pixels", self.max_output_pixels, low=1)
        _number("eye_dist_threshold", self.eye_dist_threshold, low=0.0)
        if self.seed is not None:
            _integer("--seed", self.seed, low=0)
        if self.batch_size is not None:
            _integer("--batch-size", self.batch_size, low=1)
        if self.ext not in ("auto", "jpg", "png"):
            raise OptionsError("--ext", f"'{self.ext}' is not one of auto, jpg, png")
        if self.suffix is not None and any(c in str(self.suffix) for c in "/\\\0"):
            raise OptionsError("--suffix", "must not contain path separators")
        from ..face.detectors import unknown_detector

        if (problem := unknown_detector(self.detector)) is not None:
            raise OptionsError("--detector", problem)
        if self.det_threshold is not None:
            _number("--det-threshold", self.det_threshold, low=0.0, high=1.0)
        if self.min_face is not None:
            _integer("--min-face", self.min_face, low=0)
        if self.min_identity is not None:
            _number("--min-identity", self.min_identity, low=-1.0, high=1.0)
        if self.min_identity is not None and self.identity_model is None:
            raise OptionsError("--min-identity", "needs identity scores: set --identity-model (auto, a zoo "
                                                 "name or a file)")
        if self.identity_fallback not in ("input", "lower"):
            raise OptionsError("--identity-fallback", f"'{self.identity_fallback}' is not one of input, lower")
        if self.report is not None and Path(self.report).is_dir():
            raise OptionsError("--report", f"{self.report} is a folder; give a file name such as report.json")
        _device("--device", self.device)
        check_backend("--backend", self.backend)
        return self


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(RestoreOptions))
_NONE_MEANS_OFF = ("bg_upsampler", "parser", "identity_model")


def default_backend() -> str:
    """``$FACERESTORE_BACKEND`` if set, else ``auto``."""
    import os

    return os.environ.get("FACERESTORE_BACKEND", "auto") or "auto"


def check_backend(option: str, backend: Any) -> None:
    from ..engines.base import BACKENDS, EXTRAS, engine_available

    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise OptionsError(option, f"'{backend}' is not one of {', '.join(BACKENDS)}")
    name = backend.lower()
    if name in EXTRAS and not engine_available(name):
        raise OptionsError(option, f"{backend} is not installed: pip install 'facerestore[{EXTRAS[name]}]' "
                                   f"(or use auto, which falls back to PyTorch)")


def _is_off(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() == "none")


def _number(option: str, value: Any, *, low: float | None = None, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionsError(option, f"expected a number, got {value!r}")
    if not math.isfinite(value):
        raise OptionsError(option, f"must be a finite number, got {value}")
    if low is not None and value < low or high is not None and value > high:
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise OptionsError(option, f"must be {bounds}, got {value:g}")


def _integer(option: str, value: Any, *, low: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionsError(option, f"expected a whole number, got {value!r}")
    _number(option, value, low=low)


def _device(option: str, device: Any) -> None:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise OptionsError(option, f"'{device}' is not a device (cpu, cuda, cuda:1, mps): {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionsError(option, f"'{device}' asked for, but no CUDA GPU is available here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise OptionsError(option, "'mps' asked for, but Apple's MPS backend is not available here")


def check_output_folder(folder: Path) -> None:
    """Fail before any work when the output folder cannot be created or written to."""
    import os
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".facerestore-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OptionsError("-o/--output", f"cannot write to {folder} ({reason})") from None
    if not os.access(folder, os.W_OK):
        raise OptionsError("-o/--output", f"cannot write to {folder} (permission denied)")
