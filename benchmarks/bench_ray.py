"""Photos/s of `facerestore restore --engine ray` against the single-process CLI, on this machine.

Each mode restores the same photos with the same options, as a fresh command (what a user
runs): the single-process CLI (`local`; `local-1t` with one PyTorch thread, as each Ray actor
of one CPU has), and Ray with a pool of 1 and of 2 actors on a local
cluster the command starts itself. Every mode runs twice, on a small and a large set of photos
(../shared/data/photos in turn under new names, 400 px wide by default), so that the fixed start-up (Python, model
load; for Ray also the cluster and the actors) and the per-photo rate can be told apart:

    rate    = (large - small) photos / (t_large - t_small)
    startup = t_small - small / rate

Modes are interleaved round by round, and the median over rounds is reported. The model is a
GFPGANv1Clean of the release shape at 1/8 width with random weights (512-px crops; what the
pipeline around it costs is real, the network is ~30x cheaper than v1.4's), or --model FILE.
The machine is shared: the load average before and after is printed with the table.

    PYTHONPATH=src python benchmarks/bench_ray.py [--small 3 --large 12 --rounds 2 --width 400] [--model FILE]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def small_model(folder: Path) -> Path:
    import torch

    from facerestore.archs.gfpgan import GFPGANv1Clean

    torch.manual_seed(0)
    model = GFPGANv1Clean(out_size=512, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.125,
                          different_w=True, input_is_latent=True, sft_half=True)
    path = folder / "small_clean.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    return path


def make_inputs(folder: Path, count: int, width: int) -> Path:
    """``count`` photos: the shared ones in turn, at ``width`` pixels (0: as they are)."""
    import cv2

    folder.mkdir(parents=True)
    photos = sorted(p for p in PHOTOS.iterdir() if p.is_file())
    for i in range(count):
        src = photos[i % len(photos)]
        target = folder / f"{i:03d}_{src.name}"
        if not width:
            shutil.copy(src, target)
            continue
        img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
        height = round(img.shape[0] * width / img.shape[1])
        cv2.imwrite(str(target), cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
    return folder


def run(mode: str, inputs: Path, out: Path, model: Path) -> float:
    cmd = [sys.executable, "-m", "facerestore", "restore", "-i", str(inputs), "-o", str(out), "--model", str(model),
           "--detector", "mtcnn", "--parser", "none", "--bg_upsampler", "none", "--identity-model", "none",
           "--no-download", "-s", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), FACERESTORE_OFFLINE="1", RAY_AUTH_MODE="disabled")
    if mode.startswith("ray"):
        cmd += ["--engine", "ray", "--actors", mode.split("-")[1]]
    elif mode == "local-1t":  # one PyTorch thread, as each Ray actor of one CPU has (OMP_NUM_THREADS=1)
        env["OMP_NUM_THREADS"] = "1"
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    restored = len(list((out / "restored_imgs").iterdir()))
    if restored != len(list(inputs.iterdir())):
        raise SystemExit(f"{mode}: {restored} results for {len(list(inputs.iterdir()))} photos")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=3)
    parser.add_argument("--large", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="local,local-1t,ray-1,ray-2")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--width", type=int, default=400, help="photos resized to this width (0: as they are)")
    args = parser.parse_args()
    modes = args.modes.split(",")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        model = args.model or small_model(tmp)
        sets = {n: make_inputs(tmp / f"in{n}", n, args.width) for n in (args.small, args.large)}
        times: dict[tuple[str, int], list[float]] = {}
        for r in range(args.rounds):
            for mode in modes:
                for n, inputs in sets.items():
                    seconds = run(mode, inputs, tmp / f"out-{mode}-{n}-{r}", model)
                    times.setdefault((mode, n), []).append(seconds)
                    print(f"round {r}: {mode:6s} {n:3d} photos {seconds:6.1f} s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    small, large = args.small, args.large
    print(f"\n{'mode':8s} {f'{small} photos':>11s} {f'{large} photos':>11s} {'photos/s':>9s} {'start-up':>9s} "
          f"{'photos/s incl. start-up':>24s}  vs local")
    base_rate = None
    for mode in modes:
        t_small = statistics.median(times[(mode, small)])
        t_large = statistics.median(times[(mode, large)])
        rate = (large - small) / (t_large - t_small) if t_large > t_small else float("nan")
        startup = t_small - small / rate
        base_rate = base_rate or rate
        print(f"{mode:8s} {t_small:10.1f}s {t_large:10.1f}s {rate:9.2f} {startup:8.1f}s {large / t_large:24.2f}  "
              f"{rate / base_rate:.2f}x")
    print(f"\nload average (1 min) {load_before[0]:.1f} -> {load_after[0]:.1f} on {os.cpu_count()} CPUs; "
          f"median of {args.rounds} rounds")


if __name__ == "__main__":
    main()
