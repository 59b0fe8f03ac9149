"""Landmark distance (the GFPGAN paper's LMD): the mean per-point L2 distance, in pixels, between
the 98 WFLW landmarks of the restored face and of the ground truth, both found by AWing FAN as
facexlib's ``FAN.get_landmarks`` finds them (the authors' ``calculate_landmark_distance.py``).

``get_landmarks``: the BGR image is resized to 256x256 (OpenCV bilinear), turned to RGB in [0, 1],
and the last stack's 64x64 heatmaps decoded: the arg-max pixel, moved a quarter pixel towards the
larger neighbour in x and in y, plus 0.5, scaled back by (W/64, H/64). facexlib's decoding has
two quirks kept here for equal numbers: the neighbours of the first or last pixel row are read
from flat index 0 / 4095 for *every* landmark as soon as *one* landmark's maximum lies there.
One is not: a maximum on the very last pixel, where facexlib fails with an IndexError, reads that
pixel as its own right neighbour.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def decode_heatmaps(heatmaps: np.ndarray) -> np.ndarray:
    """(B, N, H, W) heatmaps -> (B, N, 2) points (x, y) in heatmap pixels, facexlib's rule."""
    b, n, h, w = heatmaps.shape
    flat = heatmaps.reshape(b * n, h * w)
    idx = np.argmax(flat, axis=1)
    rows = np.arange(b * n)
    pts = np.stack((idx % w, idx // w), axis=1).astype(np.float64)
    # facexlib reads past the end (IndexError) for a maximum on the very last pixel: clip instead.
    x_up, x_down = flat[rows, np.minimum(idx + 1, h * w - 1)], flat[rows, idx - 1]
    # facexlib: one landmark in the last (first) row sends every landmark's y-neighbour to the
    # last (first) pixel; 4095 is hard-wired for 64x64 maps.
    y_up = flat[rows, 4095] if np.any(idx + w >= 4096) else flat[rows, idx + w]
    y_down = flat[rows, 0] if np.any(idx - w <= 0) else flat[rows, idx - w]
    pts += np.sign(np.stack((x_up - x_down, y_up - y_down), axis=1)) * 0.25
    return (pts + 0.5).reshape(b, n, 2)


def read_bgr8(path: str | Path) -> np.ndarray:
    """An image as ``cv2.imread(path)`` gives it (8-bit BGR, 3 channels), any file name."""
    import cv2

    from ..io.images import cv2_imread

    img = cv2_imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: cannot be decoded as an image")
    return img


def landmark_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance between corresponding points of two (N, 2) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"landmark sets differ in shape: {a.shape} and {b.shape}")
    return float(np.sqrt(((a - b) ** 2).sum(axis=1)).mean())


class LandmarkDetector:
    """AWing FAN on whole (aligned face) images. ``model``: a file (``alignment_WFLW_4HG.pth``,
    facexlib's release: a dict with ``state_dict``) or an ``AWingFAN`` module."""

    def __init__(self, model: object, device: str = "cpu") -> None:
        import torch
        from torch import nn

        from ..archs.awing import AWingFAN
        from ..models.loading import canonicalize, errors_naming, read_checkpoint

        if isinstance(model, nn.Module):
            net = model
        else:
            path = Path(str(model))
            with errors_naming(path):
                sd = canonicalize(read_checkpoint(path))
            net = AWingFAN()
            try:
                net.load_state_dict(sd, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"{path}: not the AWing FAN (WFLW, 4 hourglasses) layout of "
                                 f"alignment_WFLW_4HG.pth: {str(exc).splitlines()[0]}") from None
        self.net = net.eval().to(device)
        self.device = torch.device(device)

    def heatmaps(self, bgr: np.ndarray) -> np.ndarray:
        import cv2
        import torch

        img = cv2.resize(np.asarray(bgr), (256, 256))
        x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))).float().div(255.0)
        with torch.no_grad():
            out = self.net(x[None].to(self.device))
        return out[:, :-1].cpu().numpy()

    def get_landmarks(self, bgr: np.ndarray) -> np.ndarray:
        """(98, 2) landmarks (x, y) in the image's pixels, of a uint8 BGR image (H, W, 3)."""
        if bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"landmarks need a 3-channel BGR image, got shape {bgr.shape}")
        h, w = bgr.shape[:2]
        return decode_heatmaps(self.heatmaps(bgr)).reshape(-1, 2) * np.array([w / 64, h / 64])
