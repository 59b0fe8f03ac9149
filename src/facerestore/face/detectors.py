"""One way to get a face detector: ``load_detector(name_or_path)``.

Every detector has ``detect(img_bgr_uint8, conf_threshold=...) -> (N, 15) float32`` in facexlib's
row layout: x1, y1, x2, y2, score, then (x, y) of the image-left eye, image-right eye, nose tip,
left and right mouth corner.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

RETINAFACE_NAMES = ("retinaface-resnet50", "retinaface-mobilenet0.25")
DETECTOR_NAMES = ("auto", "mtcnn", *RETINAFACE_NAMES)
DEFAULT_CONF_THRESHOLD = 0.97  # facexlib's, used by the official pipeline


class FaceDetector(Protocol):
    def detect(self, img: np.ndarray, conf_threshold: float = ...) -> np.ndarray: ...


def unknown_detector(name_or_path: object) -> str | None:
    """Why ``name_or_path`` names no detector (listing the valid names), or None when it may."""
    if not isinstance(name_or_path, (str, Path)):
        return None  # a module or detector object: checked when loaded
    name = str(name_or_path)
    if name.lower() in DETECTOR_NAMES or Path(name).expanduser().is_file():
        return None
    from ..models import zoo

    entry = zoo.find_entry(name)
    if entry is not None and entry.arch == "RetinaFace":
        return None
    return (f"'{name}' is not a face detector. Choose one of {', '.join(DETECTOR_NAMES)}, "
            f"or give a RetinaFace weights file")


def load_detector(name_or_path: str | Path | nn.Module = "auto", device: str | torch.device = "cpu", *,
                  allow_download: bool = True, conf_threshold: float | None = None,
                  min_face: int | None = None) -> FaceDetector:
    """A face detector by name: ``auto``, ``mtcnn``, ``retinaface-resnet50``,
    ``retinaface-mobilenet0.25``, a RetinaFace weights file, or a loaded RetinaFace module.

    ``auto`` takes RetinaFace-ResNet50 (the official pipeline's detector) when its weights are
    already on disk, and otherwise the MTCNN shipped with the package, so it never downloads and
    always works offline. ``conf_threshold`` (default 0.97) is the score a face needs;
    ``min_face`` drops faces whose box's shorter side is under that many pixels.
    """
    from ..archs.retinaface import RetinaFace
    from ..models import zoo
    from ..models.loading import CheckpointError, load
    from .mtcnn import MTCNNDetector
    from .retinaface import RetinaFaceDetector

    settings = {"conf_threshold": DEFAULT_CONF_THRESHOLD if conf_threshold is None else float(conf_threshold),
                "min_face": int(min_face or 0)}
    if isinstance(name_or_path, nn.Module):
        if not isinstance(name_or_path, RetinaFace):
            raise TypeError(f"a detector module must be RetinaFace, got {type(name_or_path).__name__}")
        return RetinaFaceDetector(name_or_path, device, **settings)
    name = str(name_or_path)
    if name.lower() == "auto":
        entry = zoo.find_entry("retinaface-resnet50")
        found = zoo.locate(entry) if entry is not None else None
        name = str(found) if found is not None else "mtcnn"  # the path: not located (hashed) twice
    if name.lower() == "mtcnn":
        return MTCNNDetector(device=device, **settings)
    problem = unknown_detector(name)
    if problem is not None:
        raise CheckpointError(problem)
    loaded = load(name, device, allow_download=allow_download)
    if not isinstance(loaded.model, RetinaFace):
        raise CheckpointError(f"{name}: a face detector must be RetinaFace weights, "
                              f"found {type(loaded.model).__name__}")
    return RetinaFaceDetector(loaded.model, device, source=loaded.source, **settings)
