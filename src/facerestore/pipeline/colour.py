"""Colour match: give a restored face the colour statistics of the face it replaces.

Face networks trained on FFHQ pull skin tones toward their training set; pasted back, the face
then differs in colour from the neck, hands and the rest of the photo (users.md #8). Matching the
mean and standard deviation of each Lab channel (Reinhard et al. 2001), measured inside a soft
ellipse over the face of the aligned crop, keeps the restored detail and takes the photo's
colours. Lab separates lightness from colour, so one channel's shift does not leak into the
others as it would in BGR.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ..io.images import is_grey

__all__ = ["face_mask", "match_colour"]

# Std ratios are capped: a flat restored channel (std near 0) would otherwise be blown up into noise.
_MAX_STD_RATIO = 4.0


@lru_cache(maxsize=4)
def face_mask(size: int) -> np.ndarray:
    """A soft ``(size, size)`` float32 weight map in [0, 1] over the face of an FFHQ-aligned crop:
    an ellipse from brows to chin and cheek to cheek (hair and background left out), feathered."""
    mask = np.zeros((size, size), np.float32)
    centre = (round(0.5 * size), round(0.56 * size))
    axes = (round(0.29 * size), round(0.36 * size))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, thickness=-1)
    k = max(3, (size // 16) | 1)
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    mask.flags.writeable = False  # shared through the cache
    return mask


def _stats(lab: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = weights[..., None] / weights.sum()
    mean = (lab * w).sum(axis=(0, 1))
    std = np.sqrt(((lab - mean) ** 2 * w).sum(axis=(0, 1)))
    return mean, std


def match_colour(restored: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``restored`` (BGR uint8) with each Lab channel's mean and std, measured under ``mask``
    (default :func:`face_mask`), set to those of ``reference`` (the input face, same size).

    A grey reference gives a grey result (all three channels equal), whatever the network did.
    """
    if restored.shape != reference.shape or restored.ndim != 3 or restored.shape[2] != 3:
        raise ValueError(f"colour match needs two BGR faces of one size, got {restored.shape} and {reference.shape}")
    if mask is None:
        if restored.shape[0] != restored.shape[1]:
            raise ValueError(f"the default face mask is for square aligned crops, got {restored.shape[:2]}")
        mask = face_mask(restored.shape[0])
    src = cv2.cvtColor(restored.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    ref = cv2.cvtColor(reference.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    src_mean, src_std = _stats(src, mask)
    ref_mean, ref_std = _stats(ref, mask)
    ratio = np.minimum(ref_std / np.maximum(src_std, 1e-6), _MAX_STD_RATIO)
    lab = (src - src_mean) * ratio + ref_mean
    bgr = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2BGR)
    out = np.clip(np.round(bgr * 255.0), 0, 255).astype(np.uint8)
    if is_grey(reference):
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        out = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    return out
