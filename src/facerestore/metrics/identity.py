"""Identity distance (the GFPGAN paper's "Deg"): the angle between ArcFace embeddings of the
restored face and of the ground truth, as the authors' ``calculate_cos_dist.py`` computes it.

Each image is read as grey by OpenCV (``imread(path, 0)``), resized to 128x128 bilinearly on
uint8, mapped to (x − 127.5) / 127.5 and embedded by ArcFace ResNet-18 (``ResNetArcFace``: the
zoo's ``arcface-resnet18``, or the authors' ``resnet18_110.pth`` from arcface-pytorch, which has
the same layout). The angle is arccos(cosine) in degrees. Pairs under 1° are "almost identical"
and are left out of the mean (and counted). One difference: the cosine is clipped to [−1, 1]
(the authors' float32 cosine can exceed 1 and give NaN for identical images).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where used
    from torch import nn

IDENTICAL_BELOW_DEG = 1.0


def read_gray(path: str | Path) -> np.ndarray:
    """An image file as OpenCV's grey decode (``cv2.imread(path, 0)``), any file name."""
    import cv2

    from ..io.images import cv2_imread

    img = cv2_imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"{path}: cannot be decoded as an image")
    return img


def preprocess(gray: np.ndarray) -> np.ndarray:
    """(1, 128, 128) float32 in [−1, 1] from a grey uint8 image."""
    import cv2

    if gray.dtype != np.uint8:
        per_level = 257.0 if gray.dtype == np.uint16 else 1.0  # 16-bit grey levels per 8-bit one
        gray = np.clip(np.round(gray.astype(np.float64) / per_level), 0, 255).astype(np.uint8)
    small = cv2.resize(gray, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return ((small - 127.5) / 127.5)[None]


def angle_deg(e1: np.ndarray, e2: np.ndarray) -> float:
    """The angle between two embeddings in degrees."""
    a, b = np.asarray(e1, np.float64).ravel(), np.asarray(e2, np.float64).ravel()
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


@dataclass(frozen=True)
class DegSummary:
    mean: float          # mean angle over the pairs kept (NaN when none is kept)
    kept: int            # pairs at or above the threshold
    identical: int       # pairs under the threshold, left out as the authors do


def summarize_angles(angles: Iterable[float], threshold: float = IDENTICAL_BELOW_DEG) -> DegSummary:
    vals = list(angles)
    kept = [a for a in vals if a >= threshold]
    return DegSummary(float(np.mean(kept)) if kept else math.nan, len(kept), len(vals) - len(kept))


class IdentityScorer:
    """ArcFace embeddings and angles. ``model``: a zoo name, a weights file, or a module."""

    def __init__(self, model: str | Path | nn.Module = "arcface-resnet18", device: str = "cpu", *,
                 allow_download: bool = True) -> None:
        import torch

        from ..models import Purpose, load

        # Any ArcFace depth loads (GFPGAN's arcface_resnet18.pth, the authors' resnet18_110.pth);
        # another kind of network is refused, naming the option.
        self.net = load(model, device, allow_download=allow_download, purpose=Purpose.IDENTITY,
                        role="the identity metric (--arcface)").model
        self.device = torch.device(device)

    def embed(self, grays: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        batch = torch.from_numpy(np.stack([preprocess(g) for g in grays])).to(self.device)
        with torch.no_grad():
            return self.net(batch).float().cpu().numpy()

    def angle(self, gray_restored: np.ndarray, gray_gt: np.ndarray) -> float:
        e = self.embed([gray_gt, gray_restored])
        return angle_deg(e[0], e[1])
