"""The Fréchet distance between two Gaussians, the formula of FID (Heusel et al. 2017):

    d² = |mu1 − mu2|² + Tr(S1 + S2 − 2 (S1 S2)^½)

BasicSR computes the matrix square root with ``scipy.linalg.sqrtm``. Here it is plain numpy:
Tr((S1 S2)^½) equals the sum of the square roots of the eigenvalues of S1^½ S2 S1^½, a symmetric
positive semi-definite matrix, so ``eigh`` gives it stably (tiny negative eigenvalues from rounding
are clipped to 0). Agrees with the sqrtm route to ~1e-10 relative on well-conditioned matrices.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where used: the Fréchet distance itself is plain numpy
    import torch

    from ..archs.inception import FIDInceptionV3


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


def fid_from_features(features: np.ndarray, mu_ref: np.ndarray, sigma_ref: np.ndarray) -> float:
    """FID of feature rows (one per image) against reference statistics: the Fréchet distance of
    N(mean, np.cov(features)) and N(mu_ref, sigma_ref), exactly.

    With fewer images than feature dimensions the sample covariance X^T X / (n − 1) (X the centred
    rows) has rank < n, and the non-zero eigenvalues of S S_ref equal those of the small symmetric
    matrix X S_ref X^T / (n − 1): the same value without any d x d square root (seconds saved at
    d = 2048; identical up to rounding, see tests).
    """
    f = np.asarray(features, np.float64)
    mean, cov = feature_stats(f)
    mu_ref = np.asarray(mu_ref, np.float64).ravel()
    sigma_ref = np.atleast_2d(np.asarray(sigma_ref, np.float64))
    n, d = f.shape
    if n - 1 >= d:
        return frechet_distance(mean, cov, mu_ref, sigma_ref)
    if mu_ref.shape != mean.shape or sigma_ref.shape != (d, d):
        raise ValueError(f"reference statistics are {mu_ref.shape[0]}-dimensional, features {d}-dimensional")
    xc = f - mean
    small = xc @ sigma_ref @ xc.T / (n - 1)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((small + small.T) / 2), 0, None))))
    diff = mean - mu_ref
    return float(diff @ diff + np.trace(cov) + np.trace(sigma_ref) - 2 * trace_sqrt)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (rows are samples, unbiased, as ``np.cov(rowvar=False)``)."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature rows, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


# ---------------------------------------------------------------- Inception features and statistics

def load_fid_inception(path: str | Path, device: str = "cpu") -> FIDInceptionV3:
    """The FID Inception-v3 from ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's release),
    loaded strictly (only BatchNorm's ``num_batches_tracked`` counters may be absent)."""
    import torch

    from ..archs.inception import FIDInceptionV3
    from ..models.loading import canonicalize, read_checkpoint

    sd = canonicalize(read_checkpoint(path))
    model = FIDInceptionV3()
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected and not k.startswith("AuxLogits.")]
    if missing or unexpected:
        raise ValueError(f"{path}: not the FID Inception layout (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); expected pt_inception-2015-12-05-6726825d.pth")
    full = {k: sd.get(k, v) for k, v in expected.items()}
    model.load_state_dict(full, strict=True)
    return model.to(torch.device(device)).eval()


def inception_input(bgr: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) RGB in [-1, 1] from a BGR image on the 0..255 scale (the authors' FID loader:
    /255, BGR->RGB, normalised with mean = std = 0.5)."""
    import torch

    x = np.asarray(bgr, dtype=np.float32) / 255.0
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    x = x[..., 2::-1]
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    return (t - 0.5) / 0.5


def load_reference_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the reference set: BasicSR's ``inception_FFHQ_512-f7b384ab.pth``
    (a torch file holding numpy ``mean`` and ``cov``) or pytorch-fid's ``.npz`` (``mu``, ``sigma``).
    Read without executing code: only numpy's array constructors are allowed to unpickle."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FID statistics file")
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    import torch

    # numpy 2 moved numpy.core to numpy._core; files pickled under either name must load.
    multiarray = importlib.import_module("numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray")
    reconstruct = multiarray._reconstruct
    allowed: list = [np.ndarray, np.dtype, reconstruct]
    allowed += [(reconstruct, f"numpy.{m}.multiarray._reconstruct") for m in ("core", "_core")]
    allowed += [type(np.dtype(t)) for t in (np.float32, np.float64)]
    with torch.serialization.safe_globals(allowed):
        stats = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(stats, dict) or "mean" not in stats or "cov" not in stats:
        raise ValueError(f"{path}: expected a dict with 'mean' and 'cov' (BasicSR's inception_FFHQ_*.pth)")
    mean, cov = stats["mean"], stats["cov"]
    if isinstance(mean, torch.Tensor):
        mean, cov = mean.numpy(), cov.numpy()
    return np.asarray(mean, np.float64), np.asarray(cov, np.float64)
