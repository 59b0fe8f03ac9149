"""ONNX export of the restoration and upscaling networks (``facerestore export MODEL OUT.onnx``).

The graph takes one input ``input`` (B, 3, H, W) float32 and gives one output ``output``, the
tensor that the pipeline uses: the restored face (GFPGAN with its stored noise, as
``randomize_noise=False``; RestoreFormer's image) or the upscaled image (RRDBNet). The batch axis
is dynamic, and so are height and width for the upscalers. The export is traced with a batch of
two, so the graph holds the batch-independent form of the StyleGAN2 modulation (the one-sample
shortcut would bake batch 1 into the weights), and it is checked with onnxruntime against PyTorch
before the file appears: it is written atomically, complete or not at all.

Needs ``onnx`` and ``onnxruntime`` (``pip install facerestore[export]``), imported here only.
"""
from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..io.atomic import atomic_path
from ..models.descriptor import ModelDescriptor, Purpose, describe

__all__ = ["OnnxExport", "OnnxRuntimeModel", "check_onnx", "export_onnx", "onnx_session", "TOLERANCE"]

TOLERANCE = 1e-4  # max abs diff to PyTorch (fp32), as for "same pixels"
EXPORTABLE = (Purpose.FACE_RESTORATION, Purpose.UPSCALING)


@dataclass(frozen=True)
class OnnxExport:
    """What was written: the file, the network, the example it was traced and checked with."""

    path: Path
    architecture: str
    example_shape: tuple[int, ...]
    dynamic_axes: dict[str, dict[int, str]]
    opset: int
    max_abs_diff: float | None  # onnxruntime vs PyTorch on the example; None when not checked

    def __str__(self) -> str:
        axes = ", ".join(sorted({a for d in self.dynamic_axes.values() for a in d.values()}))
        checked = ("not checked" if self.max_abs_diff is None
                   else f"onnxruntime vs PyTorch max abs diff {self.max_abs_diff:.2e}")
        return f"{self.path}: {self.architecture}, opset {self.opset}, dynamic {axes}; {checked}"


class _Exported(nn.Module):
    """The single-tensor forward that the pipeline calls, for tracing."""

    def __init__(self, model: nn.Module, call: Callable[[nn.Module, Tensor], Tensor]):
        super().__init__()
        self.model = model
        self._call = call

    def forward(self, x: Tensor) -> Tensor:
        return self._call(self.model, x)


def _call_for(descriptor: ModelDescriptor) -> Callable[[nn.Module, Tensor], Tensor]:
    if descriptor.takes_noise:  # GFPGAN: the stored noise, no U-Net RGB side outputs
        return lambda m, x: m(x, return_rgb=False, randomize_noise=False)[0]
    if descriptor.purpose is Purpose.FACE_RESTORATION:  # RestoreFormer: (image, codebook loss)
        return lambda m, x: m(x)[0]
    return lambda m, x: m(x)


def _example(descriptor: ModelDescriptor, size: int | None) -> Tensor:
    if size is None:
        size = descriptor.input_size or 64
    multiple = descriptor.size_multiple or 1
    if size % multiple:
        raise ValueError(f"{descriptor.architecture} needs sizes that are multiples of {multiple}, got {size}")
    if descriptor.input_size is not None and size != descriptor.input_size:
        raise ValueError(f"{descriptor.architecture} takes {descriptor.input_size}x{descriptor.input_size} "
                         f"inputs, not {size}")
    low, high = descriptor.input_range
    g = torch.Generator().manual_seed(0)
    # batch 2: traces the batch-independent modulation (see the module docstring)
    return torch.rand(2, descriptor.input_channels, size, size, generator=g) * (high - low) + low


def onnx_session(path: str | os.PathLike | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with all graph optimisations (``threads``: intra-op threads)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("onnxruntime is not installed: pip install 'facerestore[export]'") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Peak memory: prepacked weight copies and a growing arena took onnxruntime to 1.74x the
    # PyTorch process (GFPGANv1Clean 512, from the graph cache); without them 1.41x, at the same
    # speed within noise (1.50 s vs 1.45 s a face, 2 threads, benchmarks/README.md).
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.disable_prepacking", "1")
    # onnxruntime's worker threads spin after each run by default (~24 ms of CPU here): on a
    # 2-core machine that slowed what ran next on the same cores, PyTorch or OpenVINO, up to 3x
    # (a 3x3 conv 14 -> 44 ms, ArcFace on OpenVINO 16 -> 29 ms) and takes CPU from a server's
    # other requests. Without it a run wakes its threads per op: GFPGANv1Clean the same (1.46 s),
    # small graphs a few ms slower (ArcFace 18.5 -> 23.8 ms, RetinaFace mobile0.25 8.0 -> 12.6).
    # The pipeline always runs something else next, so the spin costs more than it saves.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def check_onnx(path: str | os.PathLike, module: nn.Module, x: Tensor) -> float:
    """Max abs difference between onnxruntime running ``path`` and ``module(x)`` (PyTorch)."""
    session = onnx_session(path)
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.inference_mode():
        want = module(x).numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"onnxruntime gave shape {got.shape}, PyTorch {want.shape}")
    return float(np.abs(got - want).max())


def export_onnx(model: nn.Module, path: str | os.PathLike, *, size: int | None = None, opset: int = 17,
                check: bool = True, tolerance: float = TOLERANCE) -> OnnxExport:
    """Write ``model`` (a face restoration or upscaling network) to ``path`` as ONNX.

    ``size``: the example's height and width (faces: the model's input size; upscalers: any
    allowed size, 64 by default, height and width stay dynamic). With ``check`` the file is run
    by onnxruntime on the example and refused (nothing written) if it differs from PyTorch by more
    than ``tolerance``. The model is not changed (an fp32 CPU copy is exported).
    """
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to serialise)
    except ImportError:
        raise ImportError("onnx is not installed: pip install 'facerestore[export]'") from None
    descriptor = describe(model)
    if descriptor.purpose not in EXPORTABLE:
        raise ValueError(f"{descriptor} cannot be exported: only face restoration and upscaling networks")
    if descriptor.takes_fidelity:
        # A trace freezes the fidelity weight (and adain) at the example call's values: the graph
        # would ignore -w and differ from the official output. Refused until w is a graph input.
        raise ValueError(f"{descriptor.architecture} cannot be exported yet: its fidelity weight w would be "
                         "frozen in the graph; run it on PyTorch (--backend torch)")
    module = _Exported(copy.deepcopy(model).float().cpu().eval(), _call_for(descriptor))
    x = _example(descriptor, size)
    axes = {0: "batch"} if descriptor.input_size is not None else {0: "batch", 2: "height", 3: "width"}
    out_axes = axes if descriptor.scale == 1 else {0: "batch", 2: "out_height", 3: "out_width"}
    dynamic_axes = {"input": axes, "output": out_axes}
    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp:
        with warnings.catch_warnings():
            # the tracer notes each Python branch on a shape; the batch of two picks the general path
            # (torch.jit.TracerWarning is public API that torch.jit's __all__ leaves out)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # pyright: ignore[reportPrivateImportUsage]
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            with torch.no_grad():
                torch.onnx.export(module, (x,), str(tmp), dynamo=False, input_names=["input"],
                                  output_names=["output"], dynamic_axes=dynamic_axes, opset_version=opset,
                                  do_constant_folding=True)
        diff = None
        if check:
            diff = check_onnx(tmp, module, x)
            if not diff <= tolerance:  # also catches nan
                raise RuntimeError(f"the ONNX graph differs from PyTorch by {diff:.3g} (> {tolerance:g}); "
                                   f"nothing written")
    return OnnxExport(path, descriptor.architecture, tuple(x.shape), dynamic_axes, opset, diff)


class OnnxRuntimeModel(nn.Module):
    """A restoration or upscaling network run by onnxruntime, called like the PyTorch module.

    ``OnnxRuntimeModel.from_module(load_model("v1.4"))`` exports (in memory) and wraps; the result
    takes and returns tensors as the original forward does (GFPGAN: ``(image, [])``, RestoreFormer:
    ``(image, None)``, RRDBNet: the image) and carries the original's ``descriptor``, so a
    pipeline can use it in place of the module. On this project's loaded 2-core Zen 4 CPU it ran
    GFPGANv1Clean about 2x the official PyTorch forward, level with the official model on
    onnxruntime (benchmarks/README.md). The graph holds the stored noise: fresh noise
    (``randomize_noise=True``) is refused rather than silently ignored. CPU, fp32 only.
    """

    def __init__(self, onnx: bytes | str | os.PathLike, descriptor: ModelDescriptor, threads: int | None = None):
        super().__init__()
        self.descriptor = descriptor
        self._session = onnx_session(onnx, threads)

    @classmethod
    def from_module(cls, model: nn.Module, threads: int | None = None, size: int | None = None) -> OnnxRuntimeModel:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="facerestore-onnx-") as tmp:
            path = Path(tmp) / "model.onnx"
            export_onnx(model, path, size=size)
            return cls(path.read_bytes(), describe(model), threads)

    def forward(self, x: Tensor, *args: Any, randomize_noise: bool | None = None, **kwargs: Any) -> Any:
        if self.descriptor.takes_noise and randomize_noise is not False:
            raise ValueError("the ONNX graph uses the stored noise: call it with randomize_noise=False")
        device, dtype = x.device, x.dtype
        (out,) = self._session.run(None, {"input": x.detach().float().cpu().numpy()})
        image = torch.from_numpy(out).to(device=device, dtype=dtype)
        if self.descriptor.takes_noise:
            return image, []
        if self.descriptor.purpose is Purpose.FACE_RESTORATION:
            return image, None
        return image
