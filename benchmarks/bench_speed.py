"""Speed of the restoration and upscaling forwards: ours on every engine vs the official code and its graph.

    python benchmarks/bench_speed.py [--runs 5] [--warmup 1] [--threads 2] [--only A,B] [--half]
                                     [--no-onnxruntime] [--no-openvino] [--compile] [--json out.json]

One table, one row per case and side, all timed **interleaved** in one process (every round runs
each side once, in rotating order, so load from other processes hits all sides alike):

* ``official``          the official module (reference kit, seeded weights), eager PyTorch;
* ``official ort``      the same official module exported to ONNX (``torch.onnx.export``, opset 17,
                        batch 1) and run by onnxruntime with all graph optimisations: what
                        FaceFusion users run;
* ``official ov``       that graph run by OpenVINO (f32 precision hint, latency mode). The faster
                        of these two is the peer to beat (column ``x peer``);
* ``ours torch``        ``facerestore.load_model`` on the same checkpoint, eager PyTorch (the
                        official arithmetic, official 8-bit pixels);
* ``ours onnxruntime``, ``ours openvino``, ``ours auto``: ``facerestore.engines.wrap(ours,
                        backend=...)``, what ``restore --backend`` runs (graph exported, checked
                        against PyTorch and cached; ``auto`` then reuses the cached graph);
* ``ours torch bf16``, ``ours auto --half`` (``--half``): PyTorch bf16 and ``auto`` in half
                        precision (OpenVINO bf16 on a CPU with bf16); not the same pixels, their
                        difference to ``ours torch`` is shown (``mean vs ours``);
* ``ours+compile``      (``--compile``) ``torch.compile(ours)``.

Columns: median seconds per face, faces/s, ``x official`` and ``x peer`` (median official or peer
time over this side's: > 1 means this side is faster), ``%peak`` (the forward's floating-point
operations per second, counted by ``torch.utils.flop_counter`` on one face, as a share of what a
large fp32 matrix product reaches on this machine with the same threads, measured in the same
run: how much a faster fp32 runtime could still gain), ``cpu`` (the same ratio against the
official side in process CPU time; OpenVINO's worker threads may not all count here), ``peak MiB``
(resident memory the forward adds at its peak, from Linux's VmHWM, reset before one untimed call
per side), ``max abs diff`` to the official output and ``mean vs ours`` (mean abs diff to ours on
PyTorch).

Needs the reference kit (see bench_forward.py): run with ``/tmp/refenv/bin/python`` and
``PYTHONPATH=src``. Inputs, weights and cases are those of bench_forward.py.
"""
from __future__ import annotations

import argparse
import copy
import gc
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
def _official_graph(case: bf.Case, ref: nn.Module, folder: Path) -> Path:
    """The official module exported with a batch-1 example (what a FaceFusion-style user runs)."""

    class Wrapped(nn.Module):
        def __init__(self, m: nn.Module):
            super().__init__()
            self.m = m

        def forward(self, x: Tensor) -> Tensor:
            return case.forward(self.m, x)[0]

    x1 = bf.make_input(case)[:1]
    path = folder / f"official-{case.name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapped(ref).eval(), (x1,), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["output"], do_constant_folding=True)
    return path


def _one_at_a_time(case: bf.Case, run_one: Callable[[np.ndarray], np.ndarray]) -> Side:
    x = bf.make_input(case).numpy()
    return lambda: torch.from_numpy(np.concatenate([run_one(x[i:i + 1]) for i in range(case.batch)]))


def official_onnx(case: bf.Case, graph: Path, threads: int) -> Side:
    """The official graph run by onnxruntime (all graph optimisations), one face at a time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    return _one_at_a_time(case, lambda x: session.run(None, {"input": x})[0])


def official_openvino(case: bf.Case, graph: Path, threads: int) -> Side:
    """The official graph run by OpenVINO (fp32 precision hint, latency mode), one face at a time."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(graph), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                           "PERFORMANCE_HINT": "LATENCY",
                                                           "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def run_one(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return _one_at_a_time(case, run_one)


def ours_engine(case: bf.Case, ours: nn.Module, x: Tensor, backend: str, root: Path, half: bool = False,
                ) -> tuple[Side, str, float]:
    """Ours through facerestore.engines.wrap (what `restore --backend` runs): the side, the engine
    it landed on, and the seconds wrap took (export + check + compile, with an empty cache)."""
    from facerestore.engines import wrap

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = wrap(ours, backend=backend, root=root, half=half)
    took = time.perf_counter() - start
    engine = getattr(net, "engine", "torch")
    xs = x.bfloat16() if half and engine == "torch" else x
    return (lambda: case.forward(net, xs)[0].float()), engine, took


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


# ----------------------------------------------------------------------------- the roofline
def flops_per_face(case: bf.Case, ours: nn.Module, x: Tensor) -> float | None:
    """Floating-point operations of one face's forward (a multiply-add counts two)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            case.forward(ours, x[:1])
    except Exception:  # an op the counter cannot follow: no column rather than no benchmark
        return None
    return float(counter.get_total_flops()) or None


def matmul_flops_per_s(threads: int, n: int = 4096, runs: int = 5) -> float:
    """What a large fp32 matrix product reaches here: the practical fp32 peak of these threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(runs))
    return 2 * n**3 / best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- timing
def time_sides(sides: dict[str, Side], batch: int, warmup: int, runs: int,
               settle_s: float = 0.05) -> dict[str, dict[str, Any]]:
    """Time every side ``runs`` times, interleaved. ``settle_s``: an untimed pause before each
    call, so that a side whose threads spin after it returns (onnxruntime's default, which the
    official graph's side keeps) does not slow the side after it: without it, OpenVINO's ArcFace
    right after onnxruntime took 27 ms instead of 15 (benchmarks/README.md)."""
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
                time.sleep(settle_s)
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
        if "ours torch" in outputs and name != "ours torch":
            d = (outputs[name].float() - outputs["ours torch"]).abs()
            s["vs_ours_max_abs"], s["vs_ours_mean_abs"] = d.max().item(), d.mean().item()
    return stats


def bench_case(case: bf.Case, official: Any, args: argparse.Namespace) -> dict[str, Any]:
    ref, ours = bf.build_pair(case, official)
    x = bf.make_input(case)
    sides: dict[str, Side] = {}
    notes = []
    tmp = tempfile.TemporaryDirectory(prefix="bench_speed_")
    folder = Path(tmp.name)
    if ref is not None:
        sides["official"] = lambda: bf.run_official(case, ref, x)[0]
        peers = [(name, fn) for name, fn, wanted in (("official ort", official_onnx, args.onnxruntime),
                                                     ("official ov", official_openvino, args.openvino)) if wanted]
        if peers:
            try:
                graph = _official_graph(case, ref, folder)
                for name, fn in peers:
                    sides[name] = fn(case, graph, args.threads)
            except Exception as exc:  # an op the exporter or an engine lacks: say so, time the rest
                notes.append(f"official graph skipped: {bf.one_line(exc)[:160]}")
    sides["ours torch"] = lambda: case.forward(ours, x)[0]
    backends = [b for b, wanted in (("onnxruntime", args.onnxruntime), ("openvino", args.openvino)) if wanted]
    for backend in [*backends, "auto"]:
        try:
            side, engine, took = ours_engine(case, ours, x, backend, folder / "graphs")
        except Exception as exc:
            notes.append(f"ours {backend} skipped: {bf.one_line(exc)[:160]}")
            continue
        sides[f"ours {backend}"] = side
        notes.append(f"ours {backend}: runs on {engine}; wrap took {took:.1f} s"
                     + (" (graph from the cache)" if backend == "auto" else " (export, check, compile)"))
    if args.half:
        from facerestore.engines import cpu_has_bf16
        from facerestore.export.half import to_half

        if not cpu_has_bf16():
            notes.append("--half: this CPU has no bf16; half sides skipped")
        else:
            half = to_half(copy.deepcopy(ours), torch.bfloat16)
            xh = x.bfloat16()
            sides["ours torch bf16"] = lambda: case.forward(half, xh)[0].float()
            try:
                # the fp32 module: OpenVINO rounds the weights to bf16 itself, and the fp32 graph is cached
                side, engine, took = ours_engine(case, ours, x, "auto", folder / "graphs", half=True)
                sides["ours auto --half"] = side
                notes.append(f"ours auto --half: runs on {engine} bf16; wrap took {took:.1f} s")
            except Exception as exc:
                notes.append(f"ours auto --half skipped: {bf.one_line(exc)[:160]}")
    if args.compile:
        compiled = torch.compile(ours)
        sides["ours+compile"] = lambda: case.forward(compiled, x)[0]
    result = {"input": list(x.shape), "batch": case.batch, "runs": args.runs, "notes": notes,
              "flops_per_face": flops_per_face(case, ours, x),
              "sides": time_sides(sides, case.batch, args.warmup, args.runs, args.settle)}
    tmp.cleanup()
    return result  # the caller collects: the models go with this frame (the timed closures hold them)


# ----------------------------------------------------------------------------- report
def print_table(results: dict[str, dict[str, Any]], matmul_flops: float | None = None) -> None:
    header = (f"{'case':<16}{'side':<18}{'s/face':>8}{'faces/s':>9}{'x official':>11}{'x peer':>7}{'%peak':>6}"
              f"{'cpu':>6}{'peak MiB':>10}{'max abs diff':>13}{'mean vs ours':>13}")
    print(header)
    print("-" * len(header))

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<18}skipped: {r['skipped']}")
            continue
        sides = r["sides"]
        off = sides.get("official")
        # the peer to beat: the faster of the official graph on onnxruntime and on OpenVINO
        peers = [sides[k] for k in ("official ort", "official ov") if k in sides]
        peer = min(peers, key=lambda p: p["median_s"]) if peers else None
        for i, (side, s) in enumerate(sides.items()):
            x_off = off["median_s"] / s["median_s"] if off else None
            x_peer = peer["median_s"] / s["median_s"] if peer else None
            cpu = off["cpu_median_s"] / s["cpu_median_s"] if off else None
            flops = r.get("flops_per_face")
            peak = 100 * flops / s["median_s"] / matmul_flops if flops and matmul_flops else None
            label = name if i == 0 else ""
            print(f"{label:<16}{side:<18}{s['median_s']:>8.3f}{s['faces_per_s']:>9.3f}{fmt(x_off, '.2f'):>11}"
                  f"{fmt(x_peer, '.2f'):>7}{fmt(peak, '.0f'):>6}{fmt(cpu, '.2f'):>6}"
                  f"{fmt(s.get('peak_extra_mib'), '.0f'):>10}"
                  f"{fmt(s.get('max_abs_diff'), '.2e'):>13}{fmt(s.get('vs_ours_mean_abs'), '.1e'):>13}")
        if r.get("flops_per_face"):
            print(f"{'':<16}{r['flops_per_face'] / 1e9:.1f} GFLOP per face")
        if r["batch"] > 1:
            print(f"{'':<16}per face: ours one batch of {r['batch']}; the official graph {r['batch']} single calls")
        for note in r["notes"]:
            print(f"{'':<16}{note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed interleaved rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime intra-op threads (default 2)")
    ap.add_argument("--settle", type=float, default=0.05,
                    help="untimed pause in seconds before each timed call (default 0.05): spinning threads of the "
                         "previous side stop first")
    ap.add_argument("--only", default="", help=f"comma-separated cases (default: {','.join(SPEED_CASES)})")
    ap.add_argument("--no-onnxruntime", dest="onnxruntime", action="store_false",
                    help="skip the onnxruntime sides (official graph and ours)")
    ap.add_argument("--no-openvino", dest="openvino", action="store_false",
                    help="skip the OpenVINO sides (official graph and ours)")
    ap.add_argument("--half", action="store_true",
                    help="add ours in bf16: PyTorch bf16 and `auto --half` (OpenVINO bf16); not the same pixels")
    ap.add_argument("--compile", action="store_true", help="add torch.compile(ours)")
    ap.add_argument("--reference", default=bf.DEFAULT_REFERENCE, help="folder with the kit's official.py")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    by_name = {c.name: c for c in bf.CASES}
    names = [n for n in args.only.split(",") if n] or SPEED_CASES
    unknown = [n for n in names if n not in by_name]
    if unknown:
        ap.error(f"unknown case(s) {unknown}; known: {', '.join(by_name)}")
    for engine in ("onnxruntime", "openvino"):
        if getattr(args, engine):
            try:
                __import__(engine)
            except ImportError:
                print(f"{engine} not installed: no {engine} sides", flush=True)
                setattr(args, engine, False)
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
            results[name] = {"skipped": bf.one_line(exc)[:300]}
        gc.collect()  # free this case's models before the next one is built
        print(bf.progress_line(name, results[name]), flush=True)

    info["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    info["matmul_gflops"] = round(matmul_flops_per_s(args.threads) / 1e9, 1)
    print()
    print_table(results, info["matmul_gflops"] * 1e9)
    print(f"(median of {args.runs} interleaved rounds; x official / x peer (the faster official graph) > 1: "
          f"this side is faster; %peak: of the {info['matmul_gflops']:.0f} GFLOP/s a 4096^2 fp32 matmul reaches "
          f"here; mean vs ours: mean abs diff to ours on PyTorch; "
          f"load average {info['loadavg_1m']} -> {info['loadavg_1m_end']})")
    if args.json:
        Path(args.json).write_text(json.dumps({"bench": "speed", "machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
