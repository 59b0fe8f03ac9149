"""The Fréchet distance between two Gaussians, the formula of FID (Heusel et al. 2017):

    d² = |mu1 − mu2|² + Tr(S1 + S2 − 2 (S1 S2)^½)

BasicSR computes the matrix square root with ``scipy.linalg.sqrtm``. Here it is plain numpy:
Tr((S1 S2)^½) equals the sum of the square roots of the eigenvalues of S1^½ S2 S1^½, a symmetric
positive semi-definite matrix, so ``eigh`` gives it stably (tiny negative eigenvalues from rounding
are clipped to 0). Agrees with the sqrtm route to ~1e-10 relative on well-conditioned matrices.
"""
from __future__ import annotations

import numpy as np


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet distance of N(mu1, sigma1) and N(mu2, sigma2) (the FID value)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)).ravel(), np.atleast_1d(np.asarray(mu2, np.float64)).ravel()
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in length: {mu1.shape[0]} and {mu2.shape[0]}")
    if s1.shape != s2.shape or s1.shape != (mu1.shape[0],) * 2:
        raise ValueError(f"covariances must both be {mu1.shape[0]}x{mu1.shape[0]}, got {s1.shape} and {s2.shape}")
    r1 = _sqrt_psd(s1)
    inner = np.linalg.eigvalsh((r1 @ s2 @ r1 + (r1 @ s2 @ r1).T) / 2)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(inner, 0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples, unbiased, as ``np.cov(rowvar=False)``)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)
