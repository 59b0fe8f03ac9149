"""Forward speed, side by side: facerestore against the official code, same weights, same input.

    python benchmarks/bench_forward.py [--runs 5] [--warmup 1] [--threads 2] [--only A,B]
                                       [--reference ../shared/reference] [--json out.json]
                                       [--profile CASE]

Needs an interpreter that imports both ``facerestore`` and the official code through the reference
kit's ``official.py`` (e.g. ``/tmp/refenv/bin/python`` after ``pip install -e . --no-deps``; see
benchmarks/README.md). For each case the official model is built with seeded weights
(``official.build(name, seed=0)``), saved in its release layout, and loaded into ours with
``facerestore.load_model``; both then run the same input, fp32, eval, ``inference_mode``, a fixed
thread count. Runs are interleaved (official, ours, ours, official, ...) so that load from other
processes hits both sides alike: absolute seconds on a shared machine wander, the ratio does not.

Prints one table: case, official median s, ours median s, ratio official/ours (> 1: ours faster),
max abs diff of the outputs (a sanity check that the same thing is computed).
Without the official code it says so and times ours alone (randomly initialised, same shapes).
A case whose architecture of ours does not import or load is skipped with the reason.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = os.environ.get("FACERESTORE_REFERENCE", str(REPO.parent / "shared" / "reference"))

Forward = Callable[[nn.Module, Tensor], tuple[Tensor, ...]]


def _gfpgan(m: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    # The official GFPGANer calls it this way, except randomize_noise (pinned so outputs compare).
    return (m(x, return_rgb=False, randomize_noise=False)[0],)


def _first(m: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    return (m(x)[0],)  # RestoreFormer: (image, codebook loss or None)


def _single(m: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    return (m(x),)


def _all(m: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    return tuple(m(x))  # RetinaFace (loc, conf, landmarks); ParseNet (mask logits, image)


@dataclass(frozen=True)
class Case:
    name: str
    official: str  # key of official.MODELS
    shape: tuple[int, int, int, int]  # input of ONE official call (B = 1)
    low: float
    high: float
    forward: Forward
    # Ours without the official code: module, class, kwargs (random init; timing only).
    ours_fallback: tuple[str, str, dict[str, Any]] = ("", "", {})
    # batch > 1: ours runs one (batch, ...) call, the official `batch` single calls (as GFPGANer
    # restores the faces of an image one at a time); times are reported per face.
    batch: int = 1
    notes: str = field(default="", compare=False)


_CLEAN = dict(out_size=512, num_style_feat=512, channel_multiplier=2, fix_decoder=False, num_mlp=8,
              input_is_latent=True, different_w=True, narrow=1, sft_half=True)
_PAPER = {**_CLEAN, "channel_multiplier": 1, "fix_decoder": True}
_DETECTOR_RANGE = (-123.0, 151.0)  # BGR pixels minus (104, 117, 123), as detect_faces feeds them

CASES = [
    Case("GFPGANv1Clean", "GFPGANv1Clean", (1, 3, 512, 512), -1.0, 1.0, _gfpgan,
         ("facerestore.archs.gfpgan", "GFPGANv1Clean", _CLEAN)),
    Case("GFPGANv1Clean_b4", "GFPGANv1Clean", (1, 3, 512, 512), -1.0, 1.0, _gfpgan,
         ("facerestore.archs.gfpgan", "GFPGANv1Clean", _CLEAN), batch=4,
         notes="per face: ours one batch of 4, official 4 single calls"),
    Case("GFPGANv1", "GFPGANv1", (1, 3, 512, 512), -1.0, 1.0, _gfpgan,
         ("facerestore.archs.gfpgan", "GFPGANv1", _PAPER)),
    Case("RestoreFormer", "RestoreFormer", (1, 3, 512, 512), -1.0, 1.0, _first,
         ("facerestore.archs.restoreformer", "RestoreFormer", {})),
    Case("RRDBNet_x2plus", "RRDBNet_x2plus", (1, 3, 256, 256), 0.0, 1.0, _single,
         ("facerestore.archs.rrdbnet", "RRDBNet", dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23,
                                                       num_grow_ch=32, scale=2))),
    Case("RetinaFace_resnet50", "RetinaFace_resnet50", (1, 3, 640, 640), *_DETECTOR_RANGE, _all,
         ("facerestore.archs.retinaface", "RetinaFace", dict(network_name="resnet50"))),
    Case("RetinaFace_mobile0.25", "RetinaFace_mobile0.25", (1, 3, 640, 640), *_DETECTOR_RANGE, _all,
         ("facerestore.archs.retinaface", "RetinaFace", dict(network_name="mobile0.25"))),
    Case("ParseNet", "ParseNet", (1, 3, 512, 512), -1.0, 1.0, _all,
         ("facerestore.archs.parsenet", "ParseNet", dict(in_size=512, out_size=512, parsing_ch=19))),
    # the identity score's network (GFPGAN's training loss, `evaluate`'s IDS): grey 128 px faces
    Case("ResNetArcFace", "ResNetArcFace", (1, 1, 128, 128), -1.0, 1.0, _single,
         ("facerestore.archs.arcface", "ResNetArcFace", dict(block="IRBlock", layers=(2, 2, 2, 2), use_se=False))),
]


# ----------------------------------------------------------------------------- reporting helpers
def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: why a case or a side was skipped."""
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def progress_line(name: str, result: dict[str, Any]) -> str:
    """A case's line while the benchmark runs: its skip reason, or each side's median seconds."""
    if "skipped" in result:
        return f"{name}: {result['skipped']}"
    return f"{name}: " + ", ".join(f"{k} {v['median_s']:.3f}s" for k, v in result["sides"].items())


# ----------------------------------------------------------------------------- building both sides
def import_official(reference: str) -> tuple[ModuleType | None, str]:
    """The reference kit's ``official`` module, or None and why not."""
    if not (Path(reference) / "official.py").is_file():
        return None, f"{reference}/official.py not found"
    sys.path.insert(0, reference)
    try:
        import official  # type: ignore[import-not-found]

        official.import_all()  # fails here (not mid-benchmark) if /tmp/refsrc or a dependency is missing
        return official, ""
    except Exception as exc:  # any failure means: no official side, time ours alone
        return None, one_line(exc)


def build_pair(case: Case, official: ModuleType | None) -> tuple[nn.Module | None, nn.Module]:
    """(official model or None, ours) with the same weights when the official code is there."""
    import facerestore

    if official is None:
        module, cls, kwargs = case.ours_fallback
        torch.manual_seed(0)
        return None, getattr(importlib.import_module(module), cls)(**kwargs).eval()
    ref = official.build(case.official, seed=0)
    with tempfile.TemporaryDirectory(prefix="bench_forward_") as tmp:
        path = Path(tmp) / f"{case.official}.pth"
        torch.save(official.checkpoint(case.official, ref), path)  # release layout, as users have it
        ours = facerestore.load_model(path)
    return ref, ours.eval()


def make_input(case: Case) -> Tensor:
    g = torch.Generator().manual_seed(1)
    shape = (case.batch, *case.shape[1:])
    return torch.rand(shape, generator=g) * (case.high - case.low) + case.low


def run_official(case: Case, model: nn.Module, x: Tensor) -> tuple[Tensor, ...]:
    if case.batch == 1:
        return case.forward(model, x)
    outs = [case.forward(model, x[i:i + 1]) for i in range(case.batch)]  # one face at a time
    return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))


# ----------------------------------------------------------------------------- timing
def time_case(case: Case, ref: nn.Module | None, ours: nn.Module, x: Tensor, warmup: int, runs: int,
              min_seconds: float = 0.0, max_runs: int = 200) -> dict[str, Any]:
    """Interleaved timing; the order alternates each round so neither side always runs second.
    Fast cases get extra rounds until each side has run ``min_seconds`` (at most ``max_runs``)."""
    sides: dict[str, Callable[[], tuple[Tensor, ...]]] = {"ours": lambda: case.forward(ours, x)}
    if ref is not None:
        sides["official"] = lambda: run_official(case, ref, x)
    times: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    outputs: dict[str, tuple[Tensor, ...]] = {}
    with torch.inference_mode():
        round_ = 0
        while round_ < warmup + runs or (round_ < warmup + max_runs
                                         and min(sum(ts) for ts in times.values()) < min_seconds):
            order = sorted(sides, reverse=round_ % 2 == 1)
            for side in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                outputs[side] = sides[side]()
                if round_ >= warmup:  # per face
                    times[side].append((time.perf_counter() - start) / case.batch)
                    cpu[side].append((time.process_time() - start_cpu) / case.batch)
            round_ += 1
    result: dict[str, Any] = {"input": list(x.shape), "batch": case.batch, "runs": round_ - warmup}
    for side, ts in times.items():
        result[side] = {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts,
                        "cpu_median_s": statistics.median(cpu[side]), "cpu_times_s": cpu[side]}
    if ref is not None:
        a, b = outputs["official"], outputs["ours"]
        if len(a) != len(b) or any(p.shape != q.shape for p, q in zip(a, b, strict=True)):
            result["max_abs_diff"] = None
            result["diff_note"] = (f"output shapes differ: {[tuple(p.shape) for p in a]} "
                                   f"vs {[tuple(q.shape) for q in b]}")
        else:
            result["max_abs_diff"] = max((p - q).abs().max().item() for p, q in zip(a, b, strict=True))
            result["max_abs_official"] = max(p.abs().max().item() for p in a)
        off, our = result["official"], result["ours"]
        result["ratio"] = off["median_s"] / our["median_s"]
        result["ratio_min"] = off["min_s"] / our["min_s"]
        result["ratio_cpu"] = off["cpu_median_s"] / our["cpu_median_s"]
    return result


def profile_case(case: Case, ref: nn.Module | None, ours: nn.Module, x: Tensor, rows: int = 25) -> None:
    """torch.profiler tables (self CPU time by op, and by module call stack) for both sides."""
    from torch.profiler import ProfilerActivity, profile, record_function

    sides = {"ours": lambda: case.forward(ours, x)}
    if ref is not None:
        sides["official"] = lambda: run_official(case, ref, x)
    with torch.inference_mode():
        for side, fn in sides.items():
            fn()  # warm-up
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                with record_function(side):
                    fn()
            print(f"\n=== profile {case.name} / {side}: by op ===")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))
            print(f"=== profile {case.name} / {side}: by op and input shape ===")
            print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                                     row_limit=rows))


# ----------------------------------------------------------------------------- report
def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def print_table(results: dict[str, dict[str, Any]]) -> None:
    """off/ours: ratio of the medians (the headline); 'min' and 'cpu' ratios (fastest run; process
    CPU time, which time slices lost to other processes do not inflate) show how much load moved it."""
    header = (f"{'case':<23}{'input':>13}{'official s':>11}{'ours s':>9}{'off/ours':>9}"
              f"{'min':>7}{'cpu':>7}{'max abs diff':>13}")
    print(header)
    print("-" * len(header))

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<23}  skipped: {r['skipped']}")
            continue
        shape = "x".join(map(str, r["input"]))
        off = r.get("official", {}).get("median_s")
        print(f"{name:<23}{shape:>13}{fmt(off, '.3f'):>11}{r['ours']['median_s']:>9.3f}"
              f"{fmt(r.get('ratio'), '.2f'):>9}{fmt(r.get('ratio_min'), '.2f'):>7}"
              f"{fmt(r.get('ratio_cpu'), '.2f'):>7}{fmt(r.get('max_abs_diff'), '.2e'):>13}")
        if r.get("batch", 1) > 1:
            print(f"{'':<23}  per face: ours one batch of {r['batch']}, official {r['batch']} single calls")
        if "diff_note" in r:
            print(f"{'':<23}  {r['diff_note']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per side (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs per side first")
    ap.add_argument("--min-seconds", type=float, default=2.0,
                    help="fast cases: add runs until each side has run this long (default 2)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--reference", default=DEFAULT_REFERENCE,
                    help="folder with the reference kit's official.py (env FACERESTORE_REFERENCE)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--profile", metavar="CASE", help="print torch.profiler tables for one case and exit")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    by_name = {c.name: c for c in CASES}
    names = [n for n in args.only.split(",") if n] or list(by_name)
    if args.profile:
        names = [args.profile]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {', '.join(by_name)}")

    official, why = import_official(args.reference)
    if official is None:
        print(f"official code unavailable ({why}): timing ours only, random weights", flush=True)
    info = machine()
    print(f"threads={info['threads']} runs={args.runs} warmup={args.warmup} fp32 eval inference_mode | "
          f"torch {info['torch']} | {info['cpu']} ({info['logical_cpus']} logical CPUs) | "
          f"load {info['loadavg_1m']}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        case = by_name[name]
        try:
            ref, ours = build_pair(case, official)
        except Exception as exc:  # e.g. an architecture of ours still being written
            results[name] = {"skipped": f"ours does not build/load: {one_line(exc)}"[:300]}
            print(f"{name}: {results[name]['skipped']}", flush=True)
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
            continue
        x = make_input(case)
        if args.profile:
            profile_case(case, ref, ours, x)
            return 0
        try:
            results[name] = time_case(case, ref, ours, x, args.warmup, args.runs, args.min_seconds)
        except Exception as exc:
            results[name] = {"skipped": f"forward failed: {type(exc).__name__}: {exc}"[:300]}
        r = results[name]
        if "ours" in r:
            off = r["official"]["median_s"] if "official" in r else None
            print(f"{name}: official {'-' if off is None else f'{off:.3f}s'}, ours {r['ours']['median_s']:.3f}s",
                  flush=True)
        else:
            print(f"{name}: {r['skipped']}", flush=True)
        del ref, ours, x
        gc.collect()

    info["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print()
    print_table(results)
    print(f"(seconds: median of >= {args.runs} interleaved runs (JSON: runs); off/ours > 1 means ours is faster; "
          f"min: ratio of the fastest runs; cpu: ratio of median process CPU time; "
          f"load average {info['loadavg_1m']} -> {info['loadavg_1m_end']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"bench": "forward-side-by-side", "runs": args.runs,
                                               "warmup": args.warmup, "official_available": official is not None,
                                               "machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
