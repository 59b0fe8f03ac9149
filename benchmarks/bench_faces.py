"""Faces per second of the face network through ``Restorer.restore_faces`` at several batch sizes,
fp32 and half precision, on any device (written for GPUs: batch 1 vs 16, fp16 on CUDA).

    python benchmarks/bench_faces.py /tmp/golden/GFPGANv1Clean/ckpt.pth --device cuda --half --batch 1 16
    python benchmarks/bench_faces.py v1.4 --device cuda --half --batch 1 4 16 --faces 64

Prints, per batch size and precision: median seconds per batch, faces/s, peak device memory per
face (CUDA: ``torch.cuda.max_memory_allocated``), and the max / mean abs difference (grey levels)
of the restored faces to fp32 at batch 1. Inputs are the aligned faces in
``../shared/data/aligned`` (repeated to ``--faces``) or random ones with ``--random``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _faces(n: int, random: bool) -> list[np.ndarray]:
    folder = ROOT.parent / "shared" / "data" / "aligned"
    files = sorted(folder.glob("*.png")) + sorted(folder.glob("*.jpg")) if folder.is_dir() and not random else []
    if not files:
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(n)]
    images = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_COLOR), (512, 512)) for f in files]
    return [images[i % len(images)] for i in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="zoo name or weights file of the face network")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--half", action="store_true", help="also time half precision (fp16 CUDA, bf16 else)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--faces", type=int, default=32, help="faces per timed round")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--random", action="store_true", help="random faces instead of ../shared/data/aligned")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from facerestore import Restorer

    device = torch.device(args.device)
    faces = _faces(args.faces, args.random)
    reference = None
    print(f"{args.model} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, {len(faces)} faces per round, median of {args.runs}")
    print(f"{'precision':>9}{'batch':>7}{'s/batch':>10}{'faces/s':>10}{'MiB/face':>10}{'max diff':>10}"
          f"{'mean diff':>11}")
    for half in ([False, True] if args.half else [False]):
        for batch in args.batch:
            r = Restorer(model=args.model, detector="mtcnn", parser=None, device=device, batch_size=batch,
                         half=half, allow_download=False)
            r.restore_faces(faces[:batch])  # warm-up: kernels, allocator
            _sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                out = r.restore_faces(faces)
                _sync(device)
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            per_face_mib = ((torch.cuda.max_memory_allocated(device) - base) / batch / 2**20
                            if device.type == "cuda" else float("nan"))
            if reference is None:
                reference = out
            diffs = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(out, reference, strict=True)]
            name = str(r.dtype).replace("torch.", "")
            print(f"{name:>9}{batch:7d}{seconds * batch / len(faces):10.4f}{len(faces) / seconds:10.1f}"
                  f"{per_face_mib:10.0f}{max(d.max() for d in diffs):10d}{np.mean([d.mean() for d in diffs]):11.3f}")
            del r
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
