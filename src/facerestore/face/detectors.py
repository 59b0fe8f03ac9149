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


class FaceDetector(Protocol):
    def detect(self, img: np.ndarray, conf_threshold: float = ...) -> np.ndarray: ...


def load_detector(name_or_path: str | Path | nn.Module = "auto", device: str | torch.device = "cpu", *,
                  allow_download: bool = True) -> FaceDetector:
    """A face detector by name: ``auto``, ``mtcnn``, ``retinaface-resnet50``,
    ``retinaface-mobilenet0.25``, a RetinaFace weights file, or a loaded RetinaFace module.

    ``auto`` takes RetinaFace-ResNet50 (the official pipeline's detector) when its weights are
    already on disk, and otherwise the MTCNN shipped with the package, so it never downloads and
    always works offline.
    """
    from ..models import zoo
    from ..archs.retinaface import RetinaFace
    from ..models.loading import CheckpointError, load_model
    from .mtcnn import MTCNNDetector
    from .retinaface import RetinaFaceDetector

    if isinstance(name_or_path, nn.Module):
        if not isinstance(name_or_path, RetinaFace):
            raise TypeError(f"a detector module must be RetinaFace, got {type(name_or_path).__name__}")
        return RetinaFaceDetector(name_or_path, device)
    name = str(name_or_path)
    if name.lower() == "auto":
        found = zoo.locate(zoo.find_entry("retinaface-resnet50"))
        name = str(found) if found is not None else "mtcnn"  # the path: not located (hashed) twice
    if name.lower() == "mtcnn":
        return MTCNNDetector(device=device)
    net = load_model(name, device, allow_download=allow_download)
    if not isinstance(net, RetinaFace):
        raise CheckpointError(f"{name}: a face detector must be RetinaFace weights, found {type(net).__name__}")
    return RetinaFaceDetector(net, device)
