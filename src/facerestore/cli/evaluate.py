"""``facerestore evaluate``: metrics of a restored folder against ground truth (table + JSON).

The work is done by :mod:`facerestore.metrics.evaluate`; this module parses and reports.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..metrics.evaluate import ALL_METRICS, DEFAULT_METRICS, NOT_IMPLEMENTED
from . import DefaultsHelpFormatter


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate", help="measure restored faces against ground truth (PSNR, SSIM, NIQE, LPIPS, FID, Deg, LMD)",
        description="Pair RESTORED and GT images by file stem and report each metric as the GFPGAN "
                    "authors compute it: PSNR/SSIM (BasicSR; restored colours matched to the GT's "
                    "per-channel mean and std first, as the authors' script does), NIQE (BasicSR, "
                    "Y channel), LPIPS (VGG, RGB in [-1, 1]), FID (BasicSR's Inception-v3 "
                    "features of every restored image against --fid-stats), Deg (ArcFace ResNet-18 "
                    "angle, pairs under 1 degree left out), LMD (mean distance of the 98 AWing FAN "
                    "landmarks, pixels)."
                    + ("".join(f" Not available: {k} ({v})." for k, v in NOT_IMPLEMENTED.items())),
        formatter_class=DefaultsHelpFormatter)
    _arguments(p)
    p.set_defaults(func=run)
    return p


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--restored", required=True, help="folder of restored images")
    p.add_argument("--gt", default=None, help="folder of ground-truth images (not needed for niqe alone)")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated: {','.join(ALL_METRICS)}, or all (those available)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results (per image too) here")
    p.add_argument("--crop-border", type=int, default=0, help="pixels cut from each edge before PSNR/SSIM/NIQE")
    p.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on the Y channel instead of RGB")
    p.add_argument("--no-correct-mean-std", dest="correct_mean_std", action="store_false",
                   help="plain BasicSR PSNR/SSIM, without the authors' colour matching of the restored image")
    p.add_argument("--restored-suffix", default="", help="suffix to strip from restored stems (e.g. _00)")
    p.add_argument("--arcface", default="arcface-resnet18",
                   help="ArcFace weights for deg: zoo name or file (the authors used resnet18_110.pth)")
    p.add_argument("--lpips-vgg16", default="vgg16", help="torchvision vgg16 weights: name or file")
    p.add_argument("--lpips-lin", default="lpips-vgg", help="LPIPS v0.1 vgg.pth linear layers: name or file")
    p.add_argument("--fid-stats", default=None, metavar="FILE",
                   help="FID reference statistics (the authors': inception_FFHQ_512-f7b384ab.pth)")
    p.add_argument("--fid-inception", default="inception-fid",
                   help="FID Inception weights: name or file (pt_inception-2015-12-05-6726825d.pth)")
    p.add_argument("--lmd-model", default="awing-fan",
                   help="AWing FAN weights for lmd: name or file (alignment_WFLW_4HG.pth)")
    p.add_argument("--device", default="cpu", help="device for the network metrics")
    p.add_argument("--no-download", action="store_true", help="never download weights")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..metrics.evaluate import (
        EvalOptions,
        EvaluationError,
        evaluate_folders,
        format_table,
        result_dict,
        write_json_atomic,
    )

    opts = EvalOptions(metrics=tuple(args.metrics.split(",")), crop_border=args.crop_border,
                       test_y_channel=args.y_channel, correct_mean_std=args.correct_mean_std,
                       restored_suffix=args.restored_suffix, arcface=args.arcface,
                       lpips_vgg16=args.lpips_vgg16, lpips_lin=args.lpips_lin, fid_stats=args.fid_stats,
                       fid_inception=args.fid_inception, lmd_model=args.lmd_model, device=args.device,
                       allow_download=not args.no_download)

    if args.json:  # never overwrite one of the images being measured (`--json restored/x.png`)
        target = Path(args.json).resolve()
        folders = {Path(f).resolve() for f in (args.restored, args.gt) if f}
        if target.is_file() and target.parent in folders and target.suffix.lower() != ".json":
            print(f"error: --json: {args.json} is a file of the folders being evaluated; give a new .json path",
                  file=sys.stderr)
            return 2

    def bar(items: Any, total: int) -> Any:
        from tqdm.auto import tqdm
        return tqdm(items, total=total, unit="img", desc="evaluate", disable=args.quiet or None, leave=False)

    try:
        result = evaluate_folders(args.restored, args.gt, opts, progress=bar)
    except EvaluationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pairing = result.pairing
    if args.gt is not None and (pairing.restored_only or pairing.gt_only):
        def names(ps: list) -> str:
            shown = ", ".join(p.name for p in ps[:8])
            return shown + (f", ... ({len(ps)} in all)" if len(ps) > 8 else "")
        if pairing.restored_only:
            print(f"note: {len(pairing.restored_only)} restored without ground truth: {names(pairing.restored_only)}",
                  file=sys.stderr)
        if pairing.gt_only:
            print(f"note: {len(pairing.gt_only)} ground truths without a restored image: {names(pairing.gt_only)}",
                  file=sys.stderr)
    for dup in pairing.duplicates:
        print(f"note: two files share a stem, the first is used: {dup}", file=sys.stderr)
    for f, reason in result.failures:
        print(f"error: {f}: {reason}", file=sys.stderr)
    counted = (f"{len(pairing.pairs)} pairs" if args.gt is not None
               else f"{len(pairing.restored_only)} images (no ground truth)")
    print(counted + (f", {len(result.failures)} failures" if result.failures else ""))
    print(format_table(result))
    if args.json:
        path = write_json_atomic(args.json, result_dict(result))
        print(f"results written to {path}")
    return 1 if result.failures else 0
