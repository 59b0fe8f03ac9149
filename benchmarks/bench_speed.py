"""Speed of the restoration and upscaling forwards: ours vs the official code vs onnxruntime.

    python benchmarks/bench_speed.py [--runs 5] [--warmup 1] [--threads 2] [--only A,B]
                                     [--no-onnxruntime] [--compile] [--bf16] [--json out.json]

One table, one row per case and side, all timed **interleaved** in one process (every round runs
each side once, in rotating order, so load from other processes hits all sides alike):

* ``official``      the official module (reference kit, seeded weights), eager PyTorch;
* ``onnxruntime``   the same official module exported to ONNX (``torch.onnx.export``, opset 17)
                    and run by onnxruntime with all graph optimisations: what FaceFusion users run,
                    the peer to beat;
* ``ours``          ``facerestore.load_model`` on the same checkpoint, eager PyTorch (default:
                    the official arithmetic, official 8-bit pixels);
* ``ours NHWC``     the same after ``facerestore.archs.ops.use_channels_last`` (opt-in
                    channels-last activations on CPU: faster, outputs move by fp32 rounding);
* ``ours ort``      ours exported by ``facerestore.export.export_onnx`` (batch-independent
                    modulation: constant conv weights that onnxruntime can prepack) on onnxruntime;
* ``ours+compile``  (``--compile``) ``torch.compile(ours)``; its first call (compilation) is
                    reported as ``warm-up s``;
* ``ours bf16``     (``--bf16``) ``facerestore.export.to_half(ours, bf16)``; not the same pixels
                    (its diff is shown), listed to show what half precision costs or gains on CPU.

Columns: median seconds per face, faces/s, ``x official`` and ``x ort`` (median official or
onnxruntime time over this side's: > 1 means this side is faster), ``cpu`` (the same ratio
against the official side in process CPU time, which time slices lost to other processes do not
inflate), ``peak MiB`` (resident memory the forward adds at its peak, from Linux's VmHWM, reset
before one untimed call per side) and ``max abs diff`` to the official output.

Needs the reference kit (see bench_forward.py): run with ``/tmp/refenv/bin/python`` after
``/tmp/refenv/bin/pip install -e . --no-deps``. Inputs, weights and cases are those of
bench_forward.py.
"""
from __future__ import annotations

import argparse
import copy
import gc
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_forward as bf  # noqa: E402  (cases, model building, machine info)

SPEED_CASES = ["GFPGANv1Clean", "GFPGANv1Clean_b4", "GFPGANv1", "RestoreFormer", "RRDBNet_x2plus"]
Side = Callable[[], Tensor]


# ----------------------------------------------------------------------------- sides
def official_onnx(case: bf.Case, ref: nn.Module, threads: int) -> Side:
    """The official module, exported with a batch-1 example, run by onnxruntime one face at a time."""
    import onnxruntime as ort

    class Wrapped(nn.Module):
        def __init__(self, m: nn.Module):
            super().__init__()
            self.m = m

        def forward(self, x: Tensor) -> Tensor:
            return case.forward(self.m, x)[0]

    x1 = bf.make_input(case)[:1]
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped(ref).eval(), (x1,), f, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"], do_constant_folding=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(f.getvalue(), options, providers=["CPUExecutionProvider"])
    x = bf.make_input(case).numpy()

    def run() -> Tensor:
        return torch.from_numpy(np.concatenate([session.run(None, {"input": x[i:i + 1]})[0]
                                                for i in range(case.batch)]))

    return run


def ours_onnx(ours: nn.Module, x: Tensor, threads: int) -> Side:
    """Ours through facerestore's own ONNX export, run by onnxruntime (the whole batch at once)."""
    from facerestore.export.onnx import export_onnx, onnx_session

    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        path = Path(tmp) / "ours.onnx"
        export_onnx(ours, path, size=x.shape[-1], check=False)
        session = onnx_session(path.read_bytes(), threads=threads)
    xn = x.numpy()
    return lambda: torch.from_numpy(session.run(None, {"input": xn})[0])


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def peak_extra_mib(fn: Side) -> float | None:
    """Resident memory added at the peak of one call (Linux: reset VmHWM, run, read it)."""
    try:
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
        before = _rss_kib("VmRSS")
        fn()
        return (_rss_kib("VmHWM") - before) / 1024
    except OSError:
        return None


# ----------------------------------------------------------------------------- timing
def time_sides(sides: dict[str, Side], batch: int, warmup: int, runs: int) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {k: {"times_s": [], "cpu_s": []} for k in sides}
    outputs: dict[str, Tensor] = {}
    names = list(sides)
    with torch.inference_mode():
        for name, fn in sides.items():  # warm-up (compilation for torch.compile) and memory, one side at a time
            start = time.perf_counter()
            outputs[name] = fn()
            stats[name]["first_call_s"] = time.perf_counter() - start
            for _ in range(max(warmup - 1, 0)):
                fn()
            stats[name]["peak_extra_mib"] = peak_extra_mib(fn)
        for round_ in range(runs):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:  # rotate who goes first
                start, start_cpu = time.perf_counter(), time.process_time()
                sides[name]()
                stats[name]["times_s"].append((time.perf_counter() - start) / batch)
                stats[name]["cpu_s"].append((time.process_time() - start_cpu) / batch)
    for name, s in stats.items():
        s["median_s"] = statistics.median(s["times_s"])
        s["cpu_median_s"] = statistics.median(s["cpu_s"])
        s["faces_per_s"] = 1 / s["median_s"]
        if "official" in outputs:
            s["max_abs_diff"] = (outputs[name].float() - outputs["official"]).abs().max().item()
    return stats


def bench_case(case: bf.Case, official: Any, args: argparse.Namespace) -> dict[str, Any]:
    ref, ours = bf.build_pair(case, official)
    x = bf.make_input(case)
    sides: dict[str, Side] = {}
    notes = []
    if ref is not None:
        sides["official"] = lambda: bf.run_official(case, ref, x)[0]
        if args.onnxruntime:
            try:
                sides["onnxruntime"] = official_onnx(case, ref, args.threads)
            except Exception as exc:  # an op the exporter or onnxruntime lacks: say so, time the rest
                notes.append(f"onnxruntime skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    sides["ours"] = lambda: case.forward(ours, x)[0]
    from facerestore.archs.ops import use_channels_last

    nhwc = use_channels_last(copy.deepcopy(ours))
    sides["ours NHWC"] = lambda: case.forward(nhwc, x)[0]
    if args.onnxruntime:
        try:
            sides["ours ort"] = ours_onnx(ours, x, args.threads)
        except Exception as exc:
            notes.append(f"ours ort skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    if args.compile:
        compiled = torch.compile(ours)
        sides["ours+compile"] = lambda: case.forward(compiled, x)[0]
    if args.bf16:
        from facerestore.export.half import to_half

        half = to_half(copy.deepcopy(ours), torch.bfloat16)
        xh = x.bfloat16()
        sides["ours bf16"] = lambda: case.forward(half, xh)[0].float()
    result = {"input": list(x.shape), "batch": case.batch, "runs": args.runs, "notes": notes,
              "sides": time_sides(sides, case.batch, args.warmup, args.runs)}
    return result  # the caller collects: the models go with this frame (the timed closures hold them)


# ----------------------------------------------------------------------------- report
def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = (f"{'case':<18}{'side':<14}{'s/face':>8}{'faces/s':>9}{'x official':>11}{'x ort':>7}{'cpu':>6}"
              f"{'peak MiB':>10}{'warm-up s':>10}{'max abs diff':>13}")
    print(header)
    print("-" * len(header))

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<18}skipped: {r['skipped']}")
            continue
        sides = r["sides"]
        off, ort = sides.get("official"), sides.get("onnxruntime")
        for i, (side, s) in enumerate(sides.items()):
            x_off = off["median_s"] / s["median_s"] if off else None
            x_ort = ort["median_s"] / s["median_s"] if ort else None
            cpu = off["cpu_median_s"] / s["cpu_median_s"] if off else None
            warm = s["first_call_s"] if side == "ours+compile" else None
            label = name if i == 0 else ""
            print(f"{label:<18}{side:<14}{s['median_s']:>8.3f}{s['faces_per_s']:>9.3f}{fmt(x_off, '.2f'):>11}"
                  f"{fmt(x_ort, '.2f'):>7}{fmt(cpu, '.2f'):>6}{fmt(s.get('peak_extra_mib'), '.0f'):>10}"
                  f"{fmt(warm, '.1f'):>10}{fmt(s.get('max_abs_diff'), '.2e'):>13}")
        if r["batch"] > 1:
            print(f"{'':<18}per face: ours one batch of {r['batch']}; official and onnxruntime "
                  f"{r['batch']} single calls")
        for note in r["notes"]:
            print(f"{'':<18}{note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed interleaved rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads (default 2)")
    ap.add_argument("--only", default="", help=f"comma-separated cases (default: {','.join(SPEED_CASES)})")
    ap.add_argument("--no-onnxruntime", dest="onnxruntime", action="store_false",
                    help="skip the official-model-on-onnxruntime side")
    ap.add_argument("--compile", action="store_true", help="add torch.compile(ours)")
    ap.add_argument("--bf16", action="store_true", help="add ours in bf16 (not the same pixels)")
    ap.add_argument("--reference", default=bf.DEFAULT_REFERENCE, help="folder with the kit's official.py")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    by_name = {c.name: c for c in bf.CASES}
    names = [n for n in args.only.split(",") if n] or SPEED_CASES
    unknown = [n for n in names if n not in by_name]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {', '.join(by_name)}")
    if args.onnxruntime:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("onnxruntime not installed: no onnxruntime side", flush=True)
            args.onnxruntime = False
    official, why = bf.import_official(args.reference)
    if official is None:
        print(f"official code unavailable ({why}): timing ours only, random weights", flush=True)
    info = bf.machine()
    info["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    print(f"{info['date']} | threads={info['threads']} runs={args.runs} fp32 eval inference_mode | "
          f"torch {info['torch']} | {info['cpu']} ({info['logical_cpus']} logical CPUs) | "
          f"load {info['loadavg_1m']}", flush=True)

    results: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            results[name] = bench_case(by_name[name], official, args)
        except Exception as exc:
            results[name] = {"skipped": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]}
        gc.collect()  # free this case's models before the next one is built
        r = results[name]
        summary = r.get("skipped") or ", ".join(f"{k} {v['median_s']:.3f}s" for k, v in r["sides"].items())
        print(f"{name}: {summary}", flush=True)

    info["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print()
    print_table(results)
    print(f"(median of {args.runs} interleaved rounds; x official / x ort > 1: this side is faster; "
          f"load average {info['loadavg_1m']} -> {info['loadavg_1m_end']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"bench": "speed", "machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
