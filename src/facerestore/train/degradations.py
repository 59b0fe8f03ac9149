"""The synthetic degradations of GFPGAN's training data (blur, downsample, noise, JPEG, colour).

Written after the paper's Eq. 9 and the official ``FFHQDegradationDataset`` / BasicSR
``degradations``: every function draws its random numbers from the same global generators, in
the same order and with the same calls (``random`` for the kernel type, ``np.random`` for the
numeric draws, ``torch`` for the tensor colour jitter), so with the same seeds the same image comes
out (``benchmarks/check_training.py`` checks this against the official code). Images are float32
``(H, W, 3)`` BGR arrays in [0, 1] unless a function says otherwise.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

# ----------------------------------------------------------------------------- blur kernels


def mesh_grid(kernel_size: int) -> np.ndarray:
    """(K, K, 2) grid of (x, y) offsets from the kernel centre (K odd)."""
    ax = np.arange(-kernel_size // 2 + 1.0, kernel_size // 2 + 1.0)
    xx, yy = np.meshgrid(ax, ax)
    return np.stack([xx, yy], axis=-1)


def sigma_matrix2(sig_x: float, sig_y: float, theta: float) -> np.ndarray:
    """Covariance of a Gaussian with axis sigmas (sig_x, sig_y) rotated by theta radians."""
    d = np.array([[sig_x**2, 0], [0, sig_y**2]])
    u = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return u @ d @ u.T


def bivariate_gaussian(kernel_size: int, sig_x: float, sig_y: float, theta: float,
                       isotropic: bool = True) -> np.ndarray:
    """A normalised (sums to 1) Gaussian blur kernel, float64 (K, K)."""
    grid = mesh_grid(kernel_size)
    cov = np.array([[sig_x**2, 0], [0, sig_x**2]]) if isotropic else sigma_matrix2(sig_x, sig_y, theta)
    inv = np.linalg.inv(cov)
    kernel = np.exp(-0.5 * np.sum(np.dot(grid, inv) * grid, 2))
    return kernel / np.sum(kernel)


def random_bivariate_gaussian(kernel_size: int, sigma_x_range: Sequence[float], sigma_y_range: Sequence[float],
                              rotation_range: Sequence[float], isotropic: bool = True) -> np.ndarray:
    """Draw sigma_x (and for anisotropic kernels sigma_y, then the rotation) uniformly."""
    if kernel_size % 2 != 1:
        raise ValueError(f"blur_kernel_size must be odd, got {kernel_size}")
    sigma_x = np.random.uniform(sigma_x_range[0], sigma_x_range[1])
    if isotropic:
        sigma_y, rotation = sigma_x, 0.0
    else:
        sigma_y = np.random.uniform(sigma_y_range[0], sigma_y_range[1])
        rotation = np.random.uniform(rotation_range[0], rotation_range[1])
    kernel = bivariate_gaussian(kernel_size, sigma_x, sigma_y, rotation, isotropic=isotropic)
    return kernel / np.sum(kernel)  # normalised twice, as the official code does (same float64 result)


def random_mixed_kernels(kernel_list: Sequence[str], kernel_prob: Sequence[float], kernel_size: int = 21,
                         sigma_x_range: Sequence[float] = (0.6, 5), sigma_y_range: Sequence[float] = (0.6, 5),
                         rotation_range: Sequence[float] = (-math.pi, math.pi)) -> np.ndarray:
    """Pick a kernel type with ``kernel_prob`` (python ``random``), then draw its parameters.

    GFPGAN uses only ``iso`` and ``aniso`` Gaussians; the generalized/plateau kernels of
    Real-ESRGAN are not implemented here and are refused with a clear message.
    """
    unknown = sorted(set(kernel_list) - {"iso", "aniso"})
    if unknown:
        raise ValueError(f"kernel_list: only 'iso' and 'aniso' kernels are supported (GFPGAN's), not {unknown}")
    kernel_type = random.choices(list(kernel_list), list(kernel_prob))[0]
    return random_bivariate_gaussian(kernel_size, sigma_x_range, sigma_y_range, rotation_range,
                                     isotropic=kernel_type == "iso")


# ----------------------------------------------------------------------------- noise, JPEG


def add_gaussian_noise(img: np.ndarray, sigma: float, gray_noise: bool = False) -> np.ndarray:
    """img + N(0, sigma/255) (one map for all channels when ``gray_noise``), clipped to [0, 1]."""
    if gray_noise:
        noise = np.float32(np.random.randn(*img.shape[:2])) * sigma / 255.0
        noise = np.repeat(noise[:, :, None], 3, axis=2)
    else:
        noise = np.float32(np.random.randn(*img.shape)) * sigma / 255.0
    return np.clip(img + noise, 0, 1)


def random_add_gaussian_noise(img: np.ndarray, sigma_range: Sequence[float], gray_prob: float = 0) -> np.ndarray:
    """Noise with sigma ~ U(sigma_range); the grey-noise coin is drawn even when gray_prob is 0."""
    sigma = np.random.uniform(sigma_range[0], sigma_range[1])
    gray_noise = np.random.uniform() < gray_prob
    return add_gaussian_noise(img, sigma, gray_noise)


def add_jpg_compression(img: np.ndarray, quality: float) -> np.ndarray:
    """Encode/decode as JPEG through OpenCV at ``int(quality)`` (OpenCV 5 refuses a float quality;
    older OpenCV truncated it to int, which is what this does)."""
    # the official code hands OpenCV a float image, which it rounds (to nearest even) to 8 bit with
    # a warning per call; rounding here first gives the same bytes without the warning
    img8 = np.rint(np.clip(img, 0, 1) * 255.0).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img8, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a training image")
    return np.float32(cv2.imdecode(buf, cv2.IMREAD_COLOR)) / 255.0


def random_add_jpg_compression(img: np.ndarray, quality_range: Sequence[float]) -> np.ndarray:
    return add_jpg_compression(img, np.random.uniform(quality_range[0], quality_range[1]))


# ----------------------------------------------------------------------------- colour


def color_jitter(img: np.ndarray, shift: float) -> np.ndarray:
    """Add one uniform offset in [-shift, shift] per channel (shift in [0, 1] units), clip."""
    jitter = np.random.uniform(-shift, shift, 3).astype(np.float32)
    return np.clip(img + jitter, 0, 1)


def to_gray3(img: np.ndarray) -> np.ndarray:
    """BGR -> grey (OpenCV's weights), repeated to three channels."""
    return np.tile(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None], [1, 1, 3])


def rgb_to_grayscale(img: Tensor) -> Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) with ITU-R 601 weights (as torchvision's tensor path)."""
    r, g, b = img.unbind(dim=-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).to(img.dtype).unsqueeze(dim=-3)


def _blend(img1: Tensor, img2: Tensor, ratio: float) -> Tensor:
    return (ratio * img1 + (1.0 - ratio) * img2).clamp(0, 1.0).to(img1.dtype)


def adjust_brightness(img: Tensor, factor: float) -> Tensor:
    return _blend(img, torch.zeros_like(img), factor)


def adjust_contrast(img: Tensor, factor: float) -> Tensor:
    mean = torch.mean(rgb_to_grayscale(img), dim=(-3, -2, -1), keepdim=True)
    return _blend(img, mean, factor)


def adjust_saturation(img: Tensor, factor: float) -> Tensor:
    return _blend(img, rgb_to_grayscale(img), factor)


def _rgb2hsv(img: Tensor) -> Tensor:
    r, g, b = img.unbind(dim=-3)
    maxc = torch.max(img, dim=-3).values
    minc = torch.min(img, dim=-3).values
    eqc = maxc == minc  # grey pixels: hue and saturation 0, avoid 0/0
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv2rgb(img: Tensor) -> Tensor:
    h, s, v = img.unbind(dim=-3)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(dtype=torch.int32) % 6
    p = torch.clamp(v * (1.0 - s), 0.0, 1.0)
    q = torch.clamp(v * (1.0 - s * f), 0.0, 1.0)
    t = torch.clamp(v * (1.0 - s * (1.0 - f)), 0.0, 1.0)
    mask = i.unsqueeze(dim=-3) == torch.arange(6, device=i.device).view(-1, 1, 1)  # which sextant
    a1 = torch.stack((v, q, p, p, t, v), dim=-3)
    a2 = torch.stack((t, v, v, q, p, p), dim=-3)
    a3 = torch.stack((p, p, t, v, v, q), dim=-3)
    return torch.einsum("...ijk, ...xijk -> ...xjk", mask.to(dtype=img.dtype), torch.stack((a1, a2, a3), dim=-4))


def adjust_hue(img: Tensor, factor: float) -> Tensor:
    """Rotate the hue by ``factor`` turns (in [-0.5, 0.5]) in HSV space."""
    h, s, v = _rgb2hsv(img).unbind(dim=-3)
    return _hsv2rgb(torch.stack(((h + factor) % 1.0, s, v), dim=-3))


def color_jitter_pt(img: Tensor, brightness: Sequence[float] | None, contrast: Sequence[float] | None,
                    saturation: Sequence[float] | None, hue: Sequence[float] | None) -> Tensor:
    """Brightness, contrast, saturation and hue jitter of a (3, H, W) RGB tensor in [0, 1], in a
    random order (``torch.randperm(4)``), each factor drawn from torch's RNG."""
    fns = ((brightness, adjust_brightness), (contrast, adjust_contrast), (saturation, adjust_saturation),
           (hue, adjust_hue))
    for fn_id in torch.randperm(4):
        rng, fn = fns[int(fn_id)]
        if rng is not None:
            img = fn(img, torch.tensor(1.0).uniform_(rng[0], rng[1]).item())
    return img
