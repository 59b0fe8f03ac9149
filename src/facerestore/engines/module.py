"""A network on an engine, called like the PyTorch module it replaces.

:func:`wrap` is the one call the pipeline makes where it loads a network: it picks the engine
(:func:`~facerestore.engines.base.choose_backend`), takes the checked graph from the cache or
exports and checks it (:func:`build_runner`), and returns an :class:`EngineModule` that takes and
returns torch tensors as the module's forward does. ``torch`` (and ``auto`` without the extras)
returns the module itself. A network an engine cannot take exactly (the export fails, or the
graph differs from PyTorch by more than the tolerance) runs on PyTorch, with a warning.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..io.atomic import temporary_path
from ..models.descriptor import ModelDescriptor, Purpose, describe
from .base import EngineUnavailableError, Runner, choose_backend, cpu_has_bf16, engine_version, open_runner
from .cache import cache_root, entry_for, graph_lock, weights_sha256
from .graph import GraphSpec, export_graph, graph_spec, noise_inputs, traceable

__all__ = ["EngineModule", "EngineNote", "GraphMismatchError", "TOLERANCE", "build_runner", "wrap"]

# Max abs difference to PyTorch (fp32) a graph may have, relative to the output's scale: 1e-4 on
# images in [-1, 1] or [0, 1] ("same pixels"), 1e-4 of the largest value on logits and boxes.
TOLERANCE = 1e-4


class EngineNote(UserWarning):
    """What the engine layer did that a user may want to know (an export, a fallback)."""


class GraphMismatchError(RuntimeError):
    """An exported graph gave other numbers than PyTorch; it is not cached and not used."""


Notes = Callable[[str], None] | None


def _note(message: str, on_note: Notes = None) -> None:
    """A note to ``on_note`` (the Restorer's list), or an :class:`EngineNote` warning without one."""
    if on_note is not None:
        on_note(message)
    else:
        warnings.warn(message, EngineNote, stacklevel=3)


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _max_rel_diff(got: list[np.ndarray], want: list[Tensor]) -> float:
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        w = w.detach().float().numpy()
        if g.shape != w.shape:
            raise GraphMismatchError(f"the graph gave shape {g.shape}, PyTorch {w.shape}")
        scale = max(1.0, float(np.abs(w).max()) if w.size else 1.0)
        worst = max(worst, float(np.abs(g - w).max()) / scale if w.size else 0.0)
    return worst


def check_runner(runner: Runner, reference: nn.Module, spec: GraphSpec, tolerance: float = TOLERANCE) -> float:
    """Run every example through ``runner`` and ``reference``; the worst scaled max abs diff, or
    GraphMismatchError above ``tolerance`` (also for nan)."""
    worst = 0.0
    with torch.inference_mode():
        for example in spec.examples:
            want = reference(*example)
            got = runner({n: t.numpy() for n, t in zip(spec.input_names, example, strict=True)})
            worst = max(worst, _max_rel_diff(got, list(want)))
    if not worst <= tolerance:
        raise GraphMismatchError(f"the {runner.engine} graph differs from PyTorch by {worst:.3g} (> {tolerance:g})")
    return worst


def build_runner(module: nn.Module, descriptor: ModelDescriptor, engine: str, *, half: bool = False,
                 threads: int | None = None, root: Path | None = None,
                 on_note: Notes = None) -> tuple[Runner, GraphSpec]:
    """The engine's runner for ``module``: the cached graph when a whole one exists, else a
    fresh export, checked against PyTorch before it is cached (a note says so, with its time)."""
    root = Path(root) if root is not None else cache_root()
    spec = graph_spec(module, descriptor)
    entry = entry_for(descriptor.architecture, weights_sha256(module), engine, engine_version(engine), root)
    compiled_cache = root / "openvino"
    with graph_lock(entry):
        if not entry.valid():
            damaged = entry.path.exists() or entry.sidecar.exists()
            start = time.perf_counter()
            traced = traceable(module, descriptor, spec)
            graph = export_graph(traced, spec)
            tmp = temporary_path(entry.path, ".onnx")
            try:
                tmp.write_bytes(graph)
                # checked in fp32 without the compiled-model cache: what is checked is the graph
                diff = check_runner(open_runner(engine, tmp, threads or _threads()), traced, spec)
                entry.write(graph, {"architecture": descriptor.architecture, "engine": engine,
                                    "engine_version": engine_version(engine), "max_scaled_diff": diff})
            finally:
                tmp.unlink(missing_ok=True)
            why = "replaced a damaged cache entry: " if damaged else ""
            _note(f"{why}exported {descriptor.architecture} for {engine} and checked it against PyTorch "
                  f"(max abs diff {diff:.1e}) in {time.perf_counter() - start:.1f} s; cached as {entry.path}", on_note)
    runner = open_runner(engine, entry.path, threads or _threads(), half=half, cache_dir=compiled_cache)
    return runner, spec


class EngineModule(nn.Module):
    """``module``'s forward, run by an engine. Returns what the module returns: GFPGAN
    ``(image, [])``, RestoreFormer ``(image, None)``, RRDBNet the image, RetinaFace
    ``(loc, conf, landmarks)``, ParseNet ``(logits, image)``, ArcFace the embedding. Calls the
    graph cannot answer (GFPGAN's U-Net side outputs, ``return_rgb=True``) go to the PyTorch
    module, kept as ``torch_module``."""

    def __init__(self, module: nn.Module, descriptor: ModelDescriptor, runner: Runner, spec: GraphSpec,
                 on_note: Notes = None) -> None:
        super().__init__()
        self._on_note = on_note
        self.torch_module = module
        self.descriptor = descriptor
        self.engine = runner.engine
        self.runs_half = runner.half  # not `half`: that is nn.Module.half(), the cast
        self._runner = runner
        self._inputs = list(spec.input_names)
        self._takes_noise = "noise0" in self._inputs
        self._failed: str | None = None  # the first engine error, noted once
        self._one_face = spec.one_face
        if hasattr(module, "scale"):
            self.scale = module.scale  # the upsampler reads it

    def extra_repr(self) -> str:
        return f"engine={self.engine}, half={self.runs_half}, network={self.descriptor}"

    def _run(self, *inputs: Tensor) -> list[Tensor]:
        feeds = {n: t.detach().float().cpu().numpy() for n, t in zip(self._inputs, inputs, strict=True)}
        device, dtype = inputs[0].device, inputs[0].dtype
        return [torch.from_numpy(out).to(device=device, dtype=dtype) for out in self._runner(feeds)]

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._forward(x, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - e.g. a size a fixed-size graph does not take
            if self._failed is None:
                self._failed = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                _note(f"{self.descriptor.architecture}: {self.engine} refused a call ({self._failed}); "
                      f"that call and others it refuses run on PyTorch", self._on_note)
            return self.torch_module(x, *args, **kwargs)

    def _forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Any:
        purpose = self.descriptor.purpose
        if self._takes_noise:
            if args or kwargs.get("return_rgb", True) or kwargs.get("return_latents", False):
                return self.torch_module(x, *args, **kwargs)  # side outputs: only PyTorch has them
            fresh = kwargs.get("randomize_noise", True)
            noise = noise_inputs(self.torch_module, x.shape[0], fresh)  # drawn for the whole batch, as PyTorch
            if not self._one_face:
                return self._run(x, *noise)[0], []
            faces = [self._run(x[i:i + 1], *(n[i:i + 1] if n.shape[0] > 1 else n for n in noise))[0]
                     for i in range(x.shape[0])]  # the graph takes one face (graph.py)
            return torch.cat(faces), []
        outputs = self._run(x)
        if purpose is Purpose.FACE_RESTORATION:
            return outputs[0], None
        if purpose in (Purpose.UPSCALING, Purpose.IDENTITY):
            return outputs[0]
        return tuple(outputs)


def wrap(module: nn.Module, descriptor: ModelDescriptor | None = None, backend: str | None = "auto",
         device: str | torch.device = "cpu", half: bool = False, *, root: Path | None = None,
         on_note: Notes = None) -> nn.Module:
    """``module`` on the engine ``backend`` names (``auto``: the fastest installed for this kind
    of network on ``device``), or ``module`` itself for PyTorch. ``half``: the network is to run
    in half precision (``--half``): OpenVINO then runs bf16 on a CPU that has it; onnxruntime has
    no fast half path on CPU, so the module (already cast by the caller) stays on PyTorch.
    Raises EngineUnavailableError when a named engine is not installed."""
    if isinstance(module, EngineModule):
        return module
    descriptor = descriptor or describe(module)
    device_type = torch.device(device).type
    engine = choose_backend(backend, descriptor.purpose, device_type, half, descriptor.architecture)
    if engine == "torch":
        return module
    if descriptor.takes_fidelity:
        # CodeFormer: the fidelity weight (and adain) are call arguments that a traced graph would
        # freeze at their defaults, silently ignoring -w; until they are graph inputs, PyTorch.
        _note(f"{descriptor.architecture} runs on PyTorch: its fidelity weight is not an input of "
              f"the {engine} graph", on_note)
        return module
    if device_type != "cpu":
        _note(f"{descriptor.architecture}: {engine} runs on the CPU here (tensors are copied from {device})", on_note)
    if half and (engine == "onnxruntime" or not cpu_has_bf16()):
        why = "onnxruntime has no bf16 path on CPU" if engine == "onnxruntime" else "this CPU has no bf16"
        _note(f"{descriptor.architecture}: half precision asked, {why}; it runs on PyTorch", on_note)
        return module
    try:
        runner, spec = build_runner(module, descriptor, engine, half=half, root=root, on_note=on_note)
    except (GraphMismatchError, ValueError, RuntimeError, ImportError, OSError) as exc:
        if isinstance(exc, EngineUnavailableError):
            raise
        _note(f"{descriptor.architecture} runs on PyTorch: {engine} could not take it exactly "
              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})", on_note)
        return module
    # Notes of later calls (a size the graph refuses) are warnings: they come after the caller's
    # start-up notes were read.
    return EngineModule(module, descriptor, runner, spec)
