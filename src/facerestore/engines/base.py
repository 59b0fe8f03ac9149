"""The engines, what is installed, and which one ``auto`` picks.

An engine runs an exported graph: it takes numpy arrays by input name and returns the outputs in
order. ``torch`` is the module itself (no graph); ``onnxruntime`` and ``openvino`` run the ONNX
graph that :mod:`facerestore.engines.graph` exports and checks. Neither package is imported until
an engine is used (both are extras: ``pip install "facerestore[export]"`` / ``"facerestore[openvino]"``).
"""
from __future__ import annotations

import functools
import importlib.util
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..models.descriptor import Purpose

__all__ = ["BACKENDS", "ENGINE_NAMES", "EngineUnavailableError", "Runner", "auto_order", "choose_backend",
           "cpu_has_bf16", "engine_available", "engine_version", "open_runner"]

BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
ENGINE_NAMES = ("onnxruntime", "openvino")  # the graph engines; "torch" runs the module itself
_PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
EXTRAS = {"onnxruntime": "export", "openvino": "openvino"}

# What `auto` tries on a CPU, fastest first, per kind of network. Measured, fp32, 2 threads,
# interleaved, quiet (benchmarks/README.md "Engines"), on this project's 2-vCPU Xeon (AVX-512,
# AMX), x the official PyTorch forward, OpenVINO / onnxruntime: GFPGANv1Clean 1.88 / 1.34,
# ParseNet 2.37 / 1.96, RetinaFace R50 1.58 / 1.42, RRDBNet x2 1.37 / 1.24, ArcFace 1.79 / 0.94
# (onnxruntime without spinning threads). On issue 15's Zen 4 onnxruntime led on RetinaFace
# R50 alone (1.72x vs 1.63x, 5 %), where here it trails by 10 %: one order for
# every kind, OpenVINO first. PyTorch is last: the exact reference, never the fastest on CPU.
# On CUDA `auto` is PyTorch (cuDNN); no GPU was lent to this project, so neither ONNX engine has
# been measured there.
_CPU_ORDER: dict[Purpose, tuple[str, ...]] = {
    Purpose.FACE_RESTORATION: ("openvino", "onnxruntime", "torch"),
    Purpose.FACE_PARSING: ("openvino", "onnxruntime", "torch"),
    Purpose.FACE_DETECTION: ("openvino", "onnxruntime", "torch"),
    Purpose.UPSCALING: ("openvino", "onnxruntime", "torch"),
    Purpose.IDENTITY: ("openvino", "onnxruntime", "torch"),
}
# Networks whose OpenVINO graph is further from the official output than "same pixels" allows,
# where onnxruntime is within it at nearly the same speed (benchmarks/README.md "bench_families"):
# RestoreFormer++ on OpenVINO 1.25e-4 from the official forward at 1.65x, on onnxruntime 8.2e-5 at 1.59x.
_CPU_ORDER_BY_ARCHITECTURE: dict[str, tuple[str, ...]] = {
    "RestoreFormerPlusPlus": ("onnxruntime", "openvino", "torch"),
}
# --half on a CPU with bf16: OpenVINO's bf16 inference (INFERENCE_PRECISION_HINT=bf16) ran
# GFPGANv1Clean 4.3x its fp32 and 10.6x the official forward; PyTorch bf16 only 1.3x its fp32.
_CPU_HALF_ORDER = ("openvino", "torch")


class EngineUnavailableError(RuntimeError):
    """An engine was asked for by name but is not installed; the message says what to install."""


class Runner(Protocol):
    """A loaded graph: numpy inputs by name -> outputs in the graph's order."""

    engine: str
    half: bool

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def engine_available(name: str) -> bool:
    if name == "torch":
        return True
    package = _PACKAGES.get(name)
    return package is not None and importlib.util.find_spec(package) is not None


@functools.cache
def engine_version(name: str) -> str:
    if name == "torch":
        import torch

        return torch.__version__
    if name == "onnxruntime":
        import onnxruntime

        return onnxruntime.__version__
    if name == "openvino":
        import openvino

        return openvino.__version__.split("-")[0]
    raise ValueError(f"unknown engine {name!r}")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16, AMX-BF16, or Arm's BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    if flags & {"avx512_bf16", "amx_bf16", "bf16"}:
        return True
    if engine_available("openvino") and not text:  # no /proc (macOS, Windows): ask OpenVINO
        try:
            import openvino as ov

            return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        except Exception:  # noqa: BLE001 - a probe; no answer means no
            return False
    return False


def auto_order(purpose: Purpose, device: str = "cpu", half: bool = False,
               architecture: str | None = None) -> tuple[str, ...]:
    """The engines ``auto`` tries for this kind of network (and this architecture, where one is
    measured apart) on this device: the fastest that keeps the official output first."""
    if device != "cpu":
        return ("torch",)
    if half:
        return _CPU_HALF_ORDER
    if architecture in _CPU_ORDER_BY_ARCHITECTURE:
        return _CPU_ORDER_BY_ARCHITECTURE[architecture]
    return _CPU_ORDER.get(purpose, ("torch",))


def choose_backend(backend: str | None, purpose: Purpose, device: str = "cpu", half: bool = False,
                   architecture: str | None = None) -> str:
    """The engine that runs a network: ``backend`` itself, or for ``auto`` the first installed
    engine of :func:`auto_order` (PyTorch when no extra is installed: never an error)."""
    if backend is None:
        return "torch"
    backend = backend.lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return next(name for name in auto_order(purpose, device, half, architecture) if engine_available(name))
    if not engine_available(backend):
        raise EngineUnavailableError(f"the {backend} backend is not installed: "
                                     f"pip install 'facerestore[{EXTRAS[backend]}]' (or use --backend auto)")
    return backend


# ----------------------------------------------------------------------------- runners
class OnnxRuntimeRunner:
    engine = "onnxruntime"
    half = False  # onnxruntime's CPU provider has no bf16 kernels worth using

    def __init__(self, graph: Path, threads: int | None) -> None:
        from ..export.onnx import onnx_session

        self._session = onnx_session(graph, threads)

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, feeds)  # thread-safe: one session serves every request


class OpenVinoRunner:
    engine = "openvino"

    def __init__(self, graph: Path, threads: int | None, half: bool, cache_dir: Path | None) -> None:
        import openvino as ov

        core = ov.Core()
        if cache_dir is not None:
            # The compiled model is cached too: a warm start skips OpenVINO's graph compilation.
            cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        # f32 must be asked for: on a CPU with bf16, OpenVINO would otherwise run in bf16.
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if half else "f32",
                                  "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.half = half
        self._compiled = core.compile_model(str(graph), "CPU", config)
        self._names = [p.get_any_name() for p in self._compiled.inputs]
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request; serve may call from several threads

    def __call__(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            self._request.infer({name: feeds[name] for name in self._names})
            return [self._request.get_output_tensor(i).data.copy() for i in range(len(self._compiled.outputs))]


def open_runner(engine: str, graph: Path, threads: int | None = None, half: bool = False,
                cache_dir: Path | None = None) -> Runner:
    """Load ``graph`` (an ONNX file) into ``engine``."""
    if engine == "onnxruntime":
        return OnnxRuntimeRunner(graph, threads)
    if engine == "openvino":
        return OpenVinoRunner(graph, threads, half, cache_dir)
    raise ValueError(f"{engine!r} does not run graphs; engines: {', '.join(ENGINE_NAMES)}")
