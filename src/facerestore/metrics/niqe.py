"""NIQE (Mittal et al. 2013, "Making a 'Completely Blind' Image Quality Analyzer") as BasicSR's
``calculate_niqe`` computes it: Y channel, rounded, 96x96 blocks without overlap, two scales (the
second from MATLAB's antialiased bicubic ``imresize`` by 0.5), 36 AGGD features per block, and
the distance to the pristine model in ``niqe_pris_params.npz`` (shipped in ``facerestore/data``,
from BasicSR, Apache-2.0: see ``data/LICENSE-basicsr.txt``). Lower is better.

Plain numpy (no scipy): the 7x7 smoothing is a 'nearest'-border correlation with the shipped
(symmetric) window, and the gamma function comes from :mod:`math`. Intermediate dtypes follow
BasicSR's (float32 images, float64 statistics) so the numbers agree with it closely.
"""
from __future__ import annotations

import functools
import math
import warnings
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from .psnr_ssim import bgr_to_y

if TYPE_CHECKING:  # imported where used: NIQE's first scale is plain numpy
    import torch

BLOCK = 96


@functools.lru_cache(maxsize=1)
def pristine_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu, cov, gaussian_window) of the pristine-image model shipped with the package."""
    with resources.files("facerestore").joinpath("data/niqe_pris_params.npz").open("rb") as f:
        data = np.load(f, allow_pickle=False)
        return (data["mu_pris_param"].copy(), data["cov_pris_param"].copy(), data["gaussian_window"].copy())


@functools.lru_cache(maxsize=1)
def _aggd_table() -> tuple[np.ndarray, np.ndarray]:
    """The shape parameters searched (0.2 .. 10 step 0.001) and their ratio Γ(2/a)² / (Γ(1/a)Γ(3/a))."""
    gam = np.arange(0.2, 10.001, 0.001)
    lg = np.vectorize(math.lgamma)
    r = np.exp(2 * lg(2 / gam) - lg(1 / gam) - lg(3 / gam))
    return gam, r


def _aggd_params(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (alpha, beta_left, beta_right)."""
    x = x.ravel()
    gam, r_gam = _aggd_table()
    left = np.sqrt(np.mean(x[x < 0] ** 2))
    right = np.sqrt(np.mean(x[x > 0] ** 2))
    gammahat = left / right
    rhat = np.mean(np.abs(x)) ** 2 / np.mean(x ** 2)
    rhatnorm = rhat * (gammahat ** 3 + 1) * (gammahat + 1) / (gammahat ** 2 + 1) ** 2
    alpha = float(gam[np.argmin((r_gam - rhatnorm) ** 2)])
    scale = math.sqrt(math.gamma(1 / alpha) / math.gamma(3 / alpha))
    return alpha, float(left) * scale, float(right) * scale


def _block_features(block: np.ndarray) -> list[float]:
    alpha, bl, br = _aggd_params(block)
    feat = [alpha, (bl + br) / 2]
    # Products of neighbours (horizontal, vertical, two diagonals), wrapping round like np.roll.
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, bl, br = _aggd_params(block * np.roll(block, shift, axis=(0, 1)))
        mean = (br - bl) * math.gamma(2 / alpha) / math.gamma(1 / alpha)
        feat += [alpha, mean, bl, br]
    return feat


def _smooth_nearest(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Correlate with ``window``, edges replicated (scipy.ndimage mode 'nearest'); float64 sums,
    result in the input's dtype as scipy returns it."""
    kh, kw = window.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(img.astype(np.float64), ((ph, kh - 1 - ph), (pw, kw - 1 - pw)), mode="edge")
    h, w = img.shape
    # scipy's convolve flips the kernel; flipping the view offsets instead keeps it exact for
    # any window, symmetric or not.
    out = np.zeros((h, w), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            out += window[kh - 1 - i, kw - 1 - j] * padded[i:i + h, j:j + w]
    return out.astype(img.dtype)


def _resize_weights(n_in: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights (n_out, taps) and first 0-based source index per output of MATLAB's antialiased
    bicubic ``imresize`` along one axis, in float32 as BasicSR computes them (so that NIQE's
    second scale agrees with it to the last bit, not only to float32 rounding)."""
    import torch

    n_out = math.ceil(n_in * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    u = torch.linspace(1, n_out, n_out) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    taps = math.ceil(width) + 2
    idx = left[:, None] + torch.linspace(0, taps - 1, taps)[None, :]
    d = (u[:, None] - idx) * (scale if scale < 1 else 1.0)
    a = d.abs()
    w = ((1.5 * a ** 3 - 2.5 * a ** 2 + 1) * (a <= 1).float()
         + (-0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2) * ((a > 1) & (a <= 2)).float())
    if scale < 1:
        w = w * scale
    w = w / w.sum(1, keepdim=True)
    first = idx[:, 0].long() - 1  # MATLAB's 1-based index -> 0-based
    # Drop an end column holding any zero weight, as BasicSR does: it changes no value, but the
    # number of taps decides how the float32 sums are grouped.
    if bool((w[:, 0] == 0).any()):
        w, first = w[:, 1:], first + 1
    if bool((w[:, -1] == 0).any()):
        w = w[:, :-1]
    return w.contiguous(), first


def _resize_axis(x: torch.Tensor, scale: float, axis: int) -> torch.Tensor:
    """Resize a 2-D float32 tensor along ``axis``, borders mirrored (edge repeated).

    Each output line is one matrix-vector product over the taps, on the same memory layout as
    BasicSR's loop, so the float32 sums round the same way.
    """
    import torch

    n = x.shape[axis]
    w, first = _resize_weights(n, scale)
    taps = w.shape[1]
    # Exactly as much mirrored border as the taps reach (the memory offsets then match BasicSR's,
    # and with them how the vectorised products are grouped).
    pad = max(0, -int(first.min()))
    pad_end = max(0, int(first.max()) + taps - n)
    if axis == 0:
        padded = torch.cat([x[:pad].flip(0), x, x[n - pad_end:].flip(0)], 0)
        lines = [padded[f + pad:f + pad + taps].t().mv(w[i]) for i, f in enumerate(first.tolist())]
        return torch.stack(lines, 0)
    padded = torch.cat([x[:, :pad].flip(1), x, x[:, n - pad_end:].flip(1)], 1)
    lines = [padded[:, f + pad:f + pad + taps].mv(w[i]) for i, f in enumerate(first.tolist())]
    return torch.stack(lines, 1)


def imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(img, 0.5)`` (bicubic, antialiased) of a 2-D float image, float32."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
        x = _resize_axis(_resize_axis(x, 0.5, 0), 0.5, 1)
    return x.contiguous().numpy()


def niqe_y(y: np.ndarray, block: int = BLOCK) -> float:
    """NIQE of a 2-D luminance image in [0, 255] (already rounded as BasicSR does)."""
    mu_p, cov_p, window = pristine_params()
    y = np.asarray(y)
    img = y.astype(np.float32)
    if img.ndim != 2:
        raise ValueError(f"niqe_y needs a 2-D image, got shape {img.shape}")
    nbh, nbw = img.shape[0] // block, img.shape[1] // block
    if nbh == 0 or nbw == 0:
        raise ValueError(f"NIQE needs an image of at least {block}x{block} pixels, got {img.shape[1]}x{img.shape[0]}")
    img = img[:nbh * block, :nbw * block]
    feats = []
    with warnings.catch_warnings():
        # A block without negative (or positive) coefficients gives NaN features, as in BasicSR;
        # those rows are dropped from the covariance below.
        warnings.simplefilter("ignore", RuntimeWarning)
        for scale in (1, 2):
            mu = _smooth_nearest(img, window)
            sigma = np.sqrt(np.abs(_smooth_nearest(np.square(img), window) - np.square(mu)))
            norm = (img - mu) / (sigma + 1)
            size = block // scale
            rows = [_block_features(norm[ih * size:(ih + 1) * size, iw * size:(iw + 1) * size])
                    for iw in range(nbw) for ih in range(nbh)]
            feats.append(np.array(rows, dtype=np.float64))
            if scale == 1:
                img = imresize_half(img / 255.0) * 255.0
        dist = np.concatenate(feats, axis=1)
        mu_d = np.nanmean(dist, axis=0)
    rows = dist[~np.isnan(dist).any(axis=1)]
    if rows.shape[0] < 2:
        raise ValueError(f"NIQE needs at least two {block}x{block} blocks with valid statistics; this "
                         f"{y.shape[1]}x{y.shape[0]} image has {rows.shape[0]} (use images of at least "
                         f"{2 * block}x{block} pixels)")
    cov_d = np.cov(rows, rowvar=False)
    diff = (mu_p - mu_d).ravel()
    quality = diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff
    return float(np.sqrt(quality))


def niqe(img: np.ndarray, crop_border: int = 0, convert_to: str = "y") -> float:
    """NIQE of an image in [0, 255]: ``(H, W)`` grey or ``(H, W, 3)`` BGR (as OpenCV reads it).

    ``convert_to='y'`` (BasicSR's and the authors' setting) measures the BT.601 Y channel;
    ``'gray'`` uses OpenCV's grey conversion instead.
    """
    x = np.asarray(img).astype(np.float32)
    if x.ndim == 3 and x.shape[2] == 4:
        x = x[..., :3]  # alpha carries no image content
    if x.ndim == 3:
        if convert_to == "y":
            x = bgr_to_y(x)
        elif convert_to == "gray":
            import cv2
            x = cv2.cvtColor(x / 255.0, cv2.COLOR_BGR2GRAY) * 255.0
        else:
            raise ValueError(f"convert_to must be 'y' or 'gray', got {convert_to!r}")
        x = np.squeeze(x)
    if crop_border:
        x = x[crop_border:-crop_border, crop_border:-crop_border]
    return niqe_y(x.round())
