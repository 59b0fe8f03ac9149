"""Evaluate a folder of restored faces against a folder of ground truths, metric by metric as the
GFPGAN authors do (``metric_paper/`` scripts of TencentARC/VQFR; see ../shared/specs/evaluation.md).

Files are paired by stem (``restored/0001.png`` with ``gt/0001.jpg``; ``restored_suffix`` strips
e.g. ``_00`` from restored names). Full-reference metrics (PSNR, SSIM, LPIPS, Deg, LMD) need a
pair of equal size; NIQE and FID (against reference statistics) are measured on every restored
image, with no GT needed.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .identity import DegSummary, summarize_angles
from .niqe import niqe
from .psnr_ssim import match_mean_std, psnr, ssim

ALL_METRICS = ("psnr", "ssim", "niqe", "lpips", "fid", "deg", "lmd")
DEFAULT_METRICS = ("psnr", "ssim", "niqe")
FULL_REFERENCE = ("psnr", "ssim", "lpips", "deg", "lmd")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "niqe": False, "lpips": False, "fid": False, "deg": False,
                    "lmd": False}
LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "niqe": "NIQE", "lpips": "LPIPS (VGG)", "fid": "FID",
          "deg": "Deg (ArcFace angle, °)", "lmd": "LMD (px)"}

# Metrics whose networks facerestore does not have yet: refused up front, never approximated.
NOT_IMPLEMENTED: dict[str, str] = {}

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class EvaluationError(ValueError):
    """The evaluation cannot run as asked; the message says what to change."""


@dataclass
class EvalOptions:
    metrics: tuple[str, ...] = DEFAULT_METRICS
    crop_border: int = 0
    test_y_channel: bool = False
    # The authors' calculate_psnr_ssim.py matches each restored channel's mean and std to the GT
    # before PSNR/SSIM (--correct_mean_var, default on): so is ours. Turn off for plain BasicSR.
    correct_mean_std: bool = True
    restored_suffix: str = ""
    arcface: str = "arcface-resnet18"
    lpips_vgg16: str = "vgg16"
    lpips_lin: str = "lpips-vgg"
    fid_stats: str | None = None            # reference statistics file (required for fid)
    fid_inception: str = "inception-fid"    # FID Inception weights: name or file
    lmd_model: str = "awing-fan"            # AWing FAN weights for LMD: name or file
    device: str = "cpu"
    allow_download: bool = True


@dataclass
class Pairing:
    pairs: list[tuple[str, Path, Path]]           # (stem, restored, gt)
    restored_only: list[Path] = field(default_factory=list)
    gt_only: list[Path] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)   # stems held by two files of one folder


@dataclass
class EvalResult:
    restored_dir: str
    gt_dir: str | None
    options: EvalOptions
    metrics: dict[str, float]
    counts: dict[str, int]
    per_image: dict[str, dict[str, float]]
    pairing: Pairing
    failures: list[tuple[str, str]]     # (file, reason)
    deg: DegSummary | None = None


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
                  and not p.name.startswith("."))


def _by_stem(files: Iterable[Path], suffix: str = "") -> tuple[dict[str, Path], list[str]]:
    out: dict[str, Path] = {}
    dup = []
    for p in files:
        stem = p.stem[:-len(suffix)] if suffix and p.stem.endswith(suffix) else p.stem
        if stem in out:
            dup.append(f"{out[stem].name} / {p.name}")
            continue
        out[stem] = p
    return out, dup


def pair_folders(restored_dir: Path, gt_dir: Path | None, restored_suffix: str = "") -> Pairing:
    for folder in (restored_dir, gt_dir):
        if folder is not None and not Path(folder).is_dir():
            raise EvaluationError(f"{folder}: not a folder")
    restored, dup_r = _by_stem(list_images(Path(restored_dir)), restored_suffix)
    if not restored:
        raise EvaluationError(f"{restored_dir}: no images ({', '.join(sorted(IMAGE_EXTS))})")
    if gt_dir is None:
        return Pairing([], list(restored.values()), [], dup_r)
    gt, dup_g = _by_stem(list_images(Path(gt_dir)))
    pairs = [(s, restored[s], gt[s]) for s in sorted(restored) if s in gt]
    return Pairing(pairs, [restored[s] for s in sorted(restored) if s not in gt],
                   [gt[s] for s in sorted(gt) if s not in restored], dup_r + dup_g)


def read_bgr(path: Path) -> np.ndarray:
    """An image as the authors' scripts read it (``cv2.imread(..., IMREAD_UNCHANGED)``), as float32
    on the 0..255 scale: BGR (H, W, 3) or grey (H, W); alpha dropped; 16-bit scaled to 8-bit range."""
    import cv2

    from ..io.images import cv2_imread

    img = cv2_imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("cannot be decoded as an image")
    scale = 257.0 if img.dtype == np.uint16 else 1.0
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"unsupported pixel type {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    return img.astype(np.float32) / np.float32(scale) if scale != 1.0 else img.astype(np.float32)


def _same_channels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A grey image paired with a colour one is compared as three equal channels."""
    if a.ndim == b.ndim:
        return a, b
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2), b
    return a, np.repeat(b[..., None], 3, axis=2)


def check_metrics(names: Iterable[str], have_fid_stats: bool = True) -> tuple[str, ...]:
    """The chosen metric names, validated; ``all`` = every implemented one (FID only when its
    reference statistics are given)."""
    out = []
    for name in names:
        key = name.strip().lower()
        if not key:
            continue
        if key == "all":
            out += [m for m in ALL_METRICS if m not in NOT_IMPLEMENTED and (m != "fid" or have_fid_stats)]
            continue
        if key not in ALL_METRICS:
            raise EvaluationError(f"unknown metric '{name}'; choose from {', '.join(ALL_METRICS)} (or all)")
        out.append(key)
    refused = [m for m in out if m in NOT_IMPLEMENTED]
    if refused:
        raise EvaluationError("not available: " + "; ".join(NOT_IMPLEMENTED[m] for m in refused)
                              + ". Leave " + ", ".join(refused) + " out of --metrics.")
    if not out:
        raise EvaluationError("no metric chosen")
    return tuple(dict.fromkeys(out))


class _Networks:
    """The network-based metrics' models, loaded once; missing files are all named together."""

    def __init__(self, opts: EvalOptions) -> None:
        from ..models import zoo

        self.identity = self.lpips = self.inception = self.landmarks = None
        self.fid_ref: tuple[np.ndarray, np.ndarray] | None = None
        missing = []
        if "deg" in opts.metrics:
            try:
                from .identity import IdentityScorer
                self.identity = IdentityScorer(opts.arcface, opts.device, allow_download=opts.allow_download)
            except zoo.ModelUnavailableError as exc:
                missing.append(f"Deg: {exc}")
        if "lpips" in opts.metrics:
            from .weights import metric_file
            paths = []
            for name in (opts.lpips_vgg16, opts.lpips_lin):
                try:
                    paths.append(metric_file(name, allow_download=opts.allow_download))
                except (zoo.ModelUnavailableError, FileNotFoundError) as exc:
                    missing.append(f"LPIPS: {exc}")
            if len(paths) == 2:
                from .lpips import load_lpips
                self.lpips = load_lpips(paths[0], paths[1], opts.device)
        if "lmd" in opts.metrics:
            from .landmarks import LandmarkDetector
            from .weights import metric_file
            try:
                self.landmarks = LandmarkDetector(metric_file(opts.lmd_model, allow_download=opts.allow_download),
                                                  opts.device)
            except (zoo.ModelUnavailableError, FileNotFoundError) as exc:
                missing.append(f"LMD: {exc}")
        if "fid" in opts.metrics:
            from .fid import load_fid_inception, load_reference_stats
            from .weights import FID_STATS_HELP, metric_file
            if opts.fid_stats is None:
                missing.append(f"FID: give --fid-stats FILE: {FID_STATS_HELP}")
            else:
                try:
                    self.fid_ref = load_reference_stats(opts.fid_stats)
                except (OSError, ValueError) as exc:
                    missing.append(f"FID: {exc}; expected {FID_STATS_HELP}")
            if self.fid_ref is not None:  # no 100 MB download for a run that cannot finish
                try:
                    self.inception = load_fid_inception(
                        metric_file(opts.fid_inception, allow_download=opts.allow_download), opts.device)
                except (zoo.ModelUnavailableError, FileNotFoundError) as exc:
                    missing.append(f"FID: {exc}")
        if missing:
            raise EvaluationError("missing files:\n" + "\n".join(missing))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def evaluate_folders(restored_dir: str | Path, gt_dir: str | Path | None, options: EvalOptions | None = None,
                     progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None) -> EvalResult:
    """Measure every chosen metric; ``progress(iterable, total)`` may wrap the loop (a progress bar)."""
    opts = options or EvalOptions()
    opts.metrics = check_metrics(opts.metrics, opts.fid_stats is not None)
    if opts.crop_border < 0:
        raise EvaluationError(f"--crop-border must be >= 0, got {opts.crop_border}")
    full_ref = [m for m in opts.metrics if m in FULL_REFERENCE]
    if full_ref and gt_dir is None:
        raise EvaluationError(f"{', '.join(full_ref)} compare with ground truth: give --gt DIR "
                              f"(only niqe works without it)")
    pairing = pair_folders(Path(restored_dir), Path(gt_dir) if gt_dir is not None else None, opts.restored_suffix)
    if full_ref and not pairing.pairs:
        raise EvaluationError(f"no restored image in {restored_dir} has a ground truth of the same name in "
                              f"{gt_dir} (files pair by stem; --restored-suffix strips a suffix such as _00)")
    nets = _Networks(opts)

    # One pass over every restored image: paired ones get all metrics, unpaired ones NIQE only.
    items: list[tuple[str, Path, Path | None]] = list(pairing.pairs)
    if "niqe" in opts.metrics or "fid" in opts.metrics:  # no-reference: every restored image
        items += [(p.stem, p, None) for p in pairing.restored_only]
        items.sort(key=lambda t: t[0])
    per_image: dict[str, dict[str, float]] = {}
    failures: list[tuple[str, str]] = []
    angles: list[float] = []
    fid_features: list[np.ndarray] = []
    loop = progress(items, len(items)) if progress else items
    for stem, rpath, gpath in loop:
        scores: dict[str, float] = {}
        try:
            restored = read_bgr(rpath)
        except (ValueError, OSError) as exc:
            failures.append((str(rpath), str(exc)))
            continue
        if "niqe" in opts.metrics:
            try:
                scores["niqe"] = niqe(restored, opts.crop_border)
            except ValueError as exc:
                failures.append((str(rpath), f"NIQE: {exc}"))
        if nets.inception is not None:
            import torch

            from .fid import inception_input
            with torch.no_grad():
                fid_features.append(nets.inception(inception_input(restored).to(opts.device))[0].double().cpu().numpy())
        if gpath is not None and full_ref:
            try:
                gt = read_bgr(gpath)
            except (ValueError, OSError) as exc:
                failures.append((str(gpath), str(exc)))
                gt = None
            if gt is not None and gt.shape[:2] != restored.shape[:2]:
                failures.append((str(rpath), f"size {restored.shape[1]}x{restored.shape[0]} differs from the "
                                             f"ground truth {gpath.name} ({gt.shape[1]}x{gt.shape[0]}); pair skipped"))
                gt = None
            if gt is not None:
                scores.update(_full_reference(restored, gt, rpath, gpath, opts, nets))
                if "deg" in scores:
                    angles.append(scores["deg"])
        if scores:
            per_image[stem] = scores

    metrics: dict[str, float] = {}
    counts: dict[str, int] = {}
    deg = None
    for m in opts.metrics:
        vals = [s[m] for s in per_image.values() if m in s]
        counts[m] = len(vals)
        if m == "deg":
            deg = summarize_angles(vals)
            metrics[m] = deg.mean
        elif m == "fid":
            counts[m] = len(fid_features)
            metrics[m] = _fid(fid_features, nets.fid_ref, failures)
        else:
            metrics[m] = _mean(vals)
    return EvalResult(str(restored_dir), None if gt_dir is None else str(gt_dir), opts, metrics, counts,
                      per_image, pairing, failures, deg)


def _fid(features: list[np.ndarray], ref: tuple[np.ndarray, np.ndarray] | None,
         failures: list[tuple[str, str]]) -> float:
    from .fid import fid_from_features

    if ref is None or len(features) < 2:
        failures.append(("FID", f"needs at least 2 restored images, got {len(features)}"))
        return math.nan
    if ref[0].size != features[0].size:
        failures.append(("FID", f"the reference statistics have {ref[0].size} features, the Inception gives "
                                f"{features[0].size}"))
        return math.nan
    return fid_from_features(np.stack(features), ref[0], ref[1])


def _full_reference(restored: np.ndarray, gt: np.ndarray, rpath: Path, gpath: Path, opts: EvalOptions,
                    nets: _Networks) -> dict[str, float]:
    out: dict[str, float] = {}
    r, g = _same_channels(restored, gt)
    if "psnr" in opts.metrics or "ssim" in opts.metrics:
        rc = match_mean_std(r / 255.0, g / 255.0) * 255.0 if opts.correct_mean_std else r
        if "psnr" in opts.metrics:
            out["psnr"] = psnr(g, rc, opts.crop_border, opts.test_y_channel)
        if "ssim" in opts.metrics:
            out["ssim"] = ssim(g, rc, opts.crop_border, opts.test_y_channel)
    if nets.lpips is not None:
        import torch

        from .lpips import to_lpips_input
        with torch.no_grad():
            d = nets.lpips(to_lpips_input(r).to(opts.device), to_lpips_input(g).to(opts.device))
        out["lpips"] = float(d[0])
    if nets.identity is not None:
        from .identity import read_gray
        out["deg"] = nets.identity.angle(read_gray(rpath), read_gray(gpath))
    if nets.landmarks is not None:
        from .landmarks import landmark_distance, read_bgr8
        out["lmd"] = landmark_distance(nets.landmarks.get_landmarks(read_bgr8(gpath)),
                                       nets.landmarks.get_landmarks(read_bgr8(rpath)))
    return out


# ---------------------------------------------------------------- reporting

def _fmt(v: float) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"


def format_table(result: EvalResult) -> str:
    rows = [("metric", "value", "images", "better")]
    for m in result.options.metrics:
        note = ""
        if m == "deg" and result.deg is not None and result.deg.identical:
            note = f" ({result.deg.identical} pairs < 1° left out)"
        rows.append((LABELS[m], _fmt(result.metrics[m]), str(result.counts[m]) + note,
                     "higher" if HIGHER_IS_BETTER[m] else "lower"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i in (0, 3) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # "inf" / "nan": strict JSON has no such numbers; float("inf") reads them back
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def result_dict(result: EvalResult) -> dict[str, Any]:
    from .. import __version__

    opts = asdict(result.options)
    opts["metrics"] = list(result.options.metrics)
    d: dict[str, Any] = {
        "facerestore": __version__,
        "restored": result.restored_dir,
        "gt": result.gt_dir,
        "settings": opts,
        "metrics": result.metrics,
        "counts": result.counts,
        "per_image": result.per_image,
        "unpaired": {"restored_only": [p.name for p in result.pairing.restored_only],
                     "gt_only": [p.name for p in result.pairing.gt_only],
                     "duplicate_stems": result.pairing.duplicates},
        "failures": [{"file": f, "reason": r} for f, r in result.failures],
    }
    if result.deg is not None:
        d["deg_identical_pairs"] = result.deg.identical
    return _jsonable(d)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON so that the file appears complete or not at all (io.atomic)."""
    from ..io.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
