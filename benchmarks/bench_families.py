"""Speed of CodeFormer, RestoreFormer++ and GPEN: facerestore against each family's official eager forward.

    python benchmarks/bench_families.py [--runs 3] [--warmup 1] [--threads 2] [--only A,B] [--json out.json]

For each family, in one process: the reference kit's ``families.py`` builds the official network
from its repository's mirror (sczhou/CodeFormer, wzhouxiff/RestoreFormerPlusPlus, yangxy/GPEN) with
seeded weights and returns the checkpoint in the release's layout and the official outputs. The
official module is rebuilt from the imported official file and loads that checkpoint as the release's
inference does (``load_state_dict``); ours is ``facerestore.load_model`` on the same file written to a
temporary folder (architecture detected from the weights). Both sides are then timed **interleaved**
(every round runs each side once, in rotating order, so load from other processes hits both alike),
with the official inference call: CodeFormer ``net(x, w=0.5, adain=True)[0]``, the others ``net(x)[0]``,
at each release's input size (512; GPEN-BFR-256: 256), batch 1.

Columns as bench_speed.py: median seconds per face, faces/s, ``x official`` (official median over
this side's: > 1 means this side is faster), ``cpu`` (the same ratio in process CPU time, which time
slices lost to other processes do not inflate), ``peak MiB`` and ``max abs diff`` to the official
output of the same run. Needs the kit (``--reference``, default ``../shared/reference``) and the three
mirrors; any venv with torch and facerestore importable works (e.g. ``PYTHONPATH=src``).
Building the official networks runs their forwards once more (families.py checks its own outputs),
so a run at ``--runs 3`` takes about 2-4 minutes on 2 idle cores.
"""
from __future__ import annotations

import argparse
import functools
import gc
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_forward as bf  # noqa: E402  (machine info, the kit's default location)
from bench_speed import time_sides  # noqa: E402  (interleaved timing, peak memory, diffs)

FAMILIES = ("codeformer", "restoreformerpp", "gpen512", "gpen256")
CODEFORMER_W = 0.5


def import_families(reference: str) -> Any:
    if not (Path(reference) / "families.py").is_file():
        sys.exit(f"bench_families.py: {reference}/families.py not found (set --reference)")
    sys.path.insert(0, reference)
    return importlib.import_module("families")


def official_pair(families: Any, name: str, seed: int) -> tuple[str, dict, torch.Tensor, nn.Module]:
    """(release file name, checkpoint, input, official module loaded from that checkpoint)."""
    maker = {"codeformer": families.codeformer, "restoreformerpp": families.restoreformerpp,
             "gpen512": lambda s: families.gpen(s, 512), "gpen256": lambda s: families.gpen(s, 256)}[name]
    file, ckpt, x, _, hp = maker(seed)  # imports the official file and writes the seeded checkpoint
    if name == "codeformer":  # inference_codeformer.py: load_state_dict(ckpt["params_ema"])
        net = sys.modules["basicsr.archs.codeformer_arch"].CodeFormer(**hp)
        net.load_state_dict(ckpt["params_ema"])
    elif name == "restoreformerpp":  # the release loads the Lightning state dict minus 'vqvae.'
        net = sys.modules["rfpp_vqvae_arch"].VQVAEGANMultiHeadTransformer(**hp)
        net.load_state_dict({k[len("vqvae."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("vqvae.")})
    else:  # face_gan.py: FullGenerator(...).load_state_dict(torch.load(path))
        net = sys.modules["gpen_model"].FullGenerator(**hp)
        net.load_state_dict(ckpt)
    return file, ckpt, x, net.eval()


def call(name: str, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if name == "codeformer":
        return net(x, w=CODEFORMER_W, adain=True)[0]
    return net(x)[0]


def bench_family(families: Any, name: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    import facerestore

    file, ckpt, x, official = official_pair(families, name, args.seed)
    path = folder / file
    torch.save(ckpt, path)
    del ckpt
    ours = facerestore.load_model(path)
    sides = {"official": lambda: call(name, official, x), "ours": lambda: call(name, ours, x)}
    for backend in args.backends:  # the same file on an engine (CodeFormer stays on PyTorch, with a note)
        engine = facerestore.load_model(path, backend=backend)
        label = f"auto={getattr(engine, 'engine', 'torch')}" if backend == "auto" else backend
        sides[f"ours {label}"] = functools.partial(call, name, engine, x)
    result = {"input": list(x.shape), "class": type(ours).__name__, "runs": args.runs,
              "sides": time_sides(sides, 1, args.warmup, args.runs)}
    path.unlink()
    return result


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (f"{'family':<16}{'input':>7}{'side':>10}{'s/face':>9}{'faces/s':>9}{'x official':>11}{'cpu':>6}"
              f"{'peak MiB':>10}{'max abs diff':>13}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<16}skipped: {r['skipped']}")
            continue
        off = r["sides"]["official"]
        for i, (side, s) in enumerate(r["sides"].items()):
            peak = s.get("peak_extra_mib")
            print(f"{name if i == 0 else '':<16}{r['input'][-1] if i == 0 else '':>7}{side:>10}"
                  f"{s['median_s']:>9.3f}{s['faces_per_s']:>9.3f}{off['median_s'] / s['median_s']:>11.2f}"
                  f"{off['cpu_median_s'] / s['cpu_median_s']:>6.2f}{'-' if peak is None else f'{peak:.0f}':>10}"
                  f"{s['max_abs_diff']:>13.2e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed interleaved rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--only", default=",".join(FAMILIES), help="comma-separated: " + ",".join(FAMILIES))
    ap.add_argument("--seed", type=int, default=0, help="families.py's weight seed")
    ap.add_argument("--reference", default=bf.DEFAULT_REFERENCE, help="folder with the kit's families.py")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--backend", dest="backends", action="append", default=[],
                    choices=("auto", "onnxruntime", "openvino"),
                    help="also time ours on this engine, or on what auto picks for it (repeatable)")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        ap.error(f"unknown famil(y/ies) {unknown}; known: {', '.join(FAMILIES)}")

    families = import_families(args.reference)
    torch.set_num_threads(args.threads)  # after the import: families.py sets its own count
    info = bf.machine()
    info["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"{info['date']} | threads={info['threads']} runs={args.runs} fp32 eval inference_mode | "
          f"torch {info['torch']} | {info['cpu']} ({info['logical_cpus']} logical CPUs) | "
          f"load {info['loadavg_1m']}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_families_") as tmp:
        for name in names:
            try:
                results[name] = bench_family(families, name, args, Path(tmp))
            except (Exception, SystemExit) as exc:  # one family's failure (a missing mirror) does not hide the others
                results[name] = {"skipped": bf.one_line(exc)}
            gc.collect()
            print(bf.progress_line(name, results[name]), flush=True)
    info["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print()
    print_table(results)
    print(f"(median of {args.runs} interleaved rounds, batch 1; x official > 1: this side is faster; "
          f"CodeFormer at w={CODEFORMER_W}, adain=True; load average {info['loadavg_1m']} -> {info['loadavg_1m_end']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"bench": "families", "machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
