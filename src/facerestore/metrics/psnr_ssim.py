"""PSNR and SSIM as BasicSR defines them (``basicsr/metrics/psnr_ssim.py``), and the colour
correction the GFPGAN/VQFR authors apply before measuring.

Images are ``(H, W)`` or ``(H, W, C)`` arrays in [0, 255] (any dtype), colour in OpenCV's BGR
order. Following BasicSR: the border is cropped first, the Y channel (ITU-R BT.601, the MATLAB
``rgb2ycbcr`` formula) is taken in float32 without rounding, and the measure itself runs in float64.
SSIM is the MATLAB original (Gaussian window 11, sigma 1.5, 'valid' region), averaged over channels.
"""
from __future__ import annotations

import math

import numpy as np

# BT.601 luma weights for B, G, R on [0, 1] input, giving Y in [16, 235] / 255 (MATLAB rgb2ycbcr).
_Y_WEIGHTS_BGR = np.array([24.966, 128.553, 65.481])


def bgr_to_y(img: np.ndarray) -> np.ndarray:
    """The Y channel of a BGR image in [0, 255], float32 in [0, 255], not rounded (BasicSR's
    ``to_y_channel``). Single-channel input is returned as float32 unchanged."""
    x = np.asarray(img).astype(np.float32) / 255.0
    if x.ndim == 3 and x.shape[2] == 3:
        # BasicSR: float64 dot product, cast back to float32 in [0, 1], then scaled by 255.
        y = (np.dot(x, _Y_WEIGHTS_BGR) + 16.0) / 255.0
        x = y.astype(np.float32)[..., None]
    elif x.ndim == 3 and x.shape[2] != 1:
        raise ValueError(f"the Y channel needs a 3-channel BGR image, got {x.shape[2]} channels")
    return x * 255.0


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool
             ) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(img), np.asarray(img2)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} and {b.shape}; resize or crop them to match first")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        a, b = bgr_to_y(a), bgr_to_y(b)
    return a.astype(np.float64), b.astype(np.float64)


def psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB for a peak of 255; ``inf`` for identical images."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 * 255.0 / mse)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    k = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return k / k.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D float64 array with the outer product k k^T."""
    n = k.size
    h, w = x.shape
    # Summed term by term in index order (as sum() would, minus its leading 0): the float64
    # rounding then matches the pinned BasicSR values.
    rows = k[0] * x[:h - n + 1, :]
    for i in range(1, n):
        rows = rows + k[i] * x[i:h - n + 1 + i, :]
    out = k[0] * rows[:, :w - n + 1]
    for j in range(1, n):
        out = out + k[j] * rows[:, j:w - n + 1 + j]
    return out


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    if min(a.shape) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels after cropping, got {a.shape[1]}x{a.shape[0]}")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    k = _gaussian_1d()
    mu1, mu2 = _filter_valid(a, k), _filter_valid(b, k)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _filter_valid(a * a, k) - mu1_sq
    s2 = _filter_valid(b * b, k) - mu2_sq
    s12 = _filter_valid(a * b, k) - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return float(ssim_map.mean())


def ssim(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Structural similarity (MATLAB original), the mean over channels; 1.0 for identical images."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def match_mean_std(restored: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The restored image with each channel's mean and standard deviation set to the GT's.

    This is what the GFPGAN/VQFR authors' ``calculate_psnr_ssim.py`` does before measuring
    (``--correct_mean_var``, on by default there): on float32 images in [0, 1], each channel is
    shifted to the GT mean, scaled to the GT std, and the two steps are repeated once (the
    second pass removes the mean shift the scaling introduced). Takes and returns float32 in
    [0, 1]; nothing is clipped or rounded. Colour channels only (the first three).
    """
    out = np.array(restored, dtype=np.float32, copy=True)
    ref = np.asarray(gt, dtype=np.float32)
    if out.shape != ref.shape:
        raise ValueError(f"image shapes differ: {out.shape} and {ref.shape}")
    if out.ndim == 2:
        out, ref = out[..., None], ref[..., None]
        squeeze = True
    else:
        squeeze = False
    channels = min(3, out.shape[2])
    target = [(np.mean(ref[..., c]), np.std(ref[..., c])) for c in range(channels)]
    for c in range(channels):
        mean_t, std_t = target[c]
        for _ in range(2):
            out[..., c] = out[..., c] - np.mean(out[..., c]) + mean_t
            std = np.std(out[..., c])
            # A flat channel has no spread to scale; the authors' script would divide by 0 here.
            if std > 0:
                out[..., c] = out[..., c] / std * std_t
    return out[..., 0] if squeeze else out
