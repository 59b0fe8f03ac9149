"""Deterministic test images for the metric tests, pure numpy (no OpenCV, no new RNG stream), so the
reference values computed once with BasicSR (benchmarks/metrics_reference.py) stay valid."""
from __future__ import annotations

import numpy as np


def synthetic_gt(h: int = 200, w: int = 232) -> np.ndarray:
    """A BGR uint8 image with smooth gradients, stripes and texture (natural enough for NIQE)."""
    rs = np.random.RandomState(1234)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 120 + 60 * np.sin(xx / 17.0) * np.cos(yy / 23.0) + 0.25 * (xx - yy)
    texture = rs.randint(-25, 26, size=(h, w)).astype(np.float64)
    # A cheap box blur (numpy only) so the texture has structure at several scales.
    blurred = sum(np.roll(np.roll(texture, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9
    chans = [base + blurred, base * 0.8 + 30 + texture * 0.5, 255 - base + blurred * 0.7]
    return np.clip(np.stack(chans, axis=2), 0, 255).round().astype(np.uint8)


def synthetic_restored(gt: np.ndarray) -> np.ndarray:
    """The GT with deterministic noise, a brightness shift and a colour cast (a 'restored' image)."""
    rs = np.random.RandomState(99)
    noise = rs.randint(-12, 13, size=gt.shape).astype(np.int16)
    out = gt.astype(np.int16) + noise + np.array([4, -3, 7], dtype=np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)
