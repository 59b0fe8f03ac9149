"""Every network the pipeline runs, as one ONNX graph with named inputs and outputs.

:func:`graph_spec` says, per kind of network, how the pipeline calls it (the inputs, the outputs
it keeps, which axes vary) and gives example inputs; :func:`export_graph` traces the module with
them. The StyleGAN2 decoders take their noise maps as inputs (``noise0``, ``noise1``, ...): the
stored noise is fed for the default deterministic output, and fresh noise drawn exactly as
PyTorch draws it for ``--seed`` (:func:`noise_inputs`), so one graph gives both, bit for bit the
same noise. Convolution weights stay constants (onnxruntime and OpenVINO prepack them).
"""
from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..archs.stylegan2 import ModulatedConv2d
from ..models.descriptor import ModelDescriptor, Purpose

__all__ = ["GraphSpec", "export_graph", "graph_spec", "noise_inputs", "GRAPH_FORMAT"]

GRAPH_FORMAT = 3  # bump when the exported form changes: old cache entries are then ignored
OPSET = 17


@dataclass
class GraphSpec:
    """How a network is exported and called. ``examples``: input tuples; the first is traced, all
    of them are checked (dynamic shapes are checked at more than one shape)."""

    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    examples: list[tuple[Tensor, ...]]
    call: Callable[..., tuple[Tensor, ...]] = field(repr=False)
    one_face: bool = False  # fixed batch 1: the caller runs a batch face by face


def _decoder(module: nn.Module) -> Any:
    """The StyleGAN2 decoder whose stored noise the graph takes as inputs, or None. Typed Any: its
    ``noises`` buffers and ``num_layers`` are read by name, as the architectures register them."""
    decoder = getattr(module, "stylegan_decoder", None)
    return decoder if decoder is not None and hasattr(decoder, "noises") else None


def noise_buffers(module: nn.Module) -> list[Tensor]:
    decoder = _decoder(module)
    if decoder is None:
        raise ValueError(f"{type(module).__name__} has no StyleGAN2 decoder with stored noise")
    return [getattr(decoder.noises, f"noise{i}") for i in range(decoder.num_layers)]


def noise_inputs(module: nn.Module, batch: int, fresh: bool) -> list[Tensor]:
    """The decoder's noise maps: the stored ones, or fresh ones drawn from the global RNG in the
    order, shape and dtype the PyTorch forward draws them (one ``randn(B, 1, H, W)`` per style
    conv, first to last), so a seeded call gives PyTorch's noise exactly."""
    stored = noise_buffers(module)
    if not fresh:
        return stored
    return [torch.randn(batch, 1, *n.shape[-2:], dtype=torch.float32) for n in stored]


class _WithNoiseInputs(nn.Module):
    """The face network with its stored noise replaced by graph inputs (traced only)."""

    def __init__(self, model: nn.Module, call: Callable[[nn.Module, Tensor], Tensor]) -> None:
        super().__init__()
        self.model = model
        self._call = call

    def forward(self, x: Tensor, *noises: Tensor) -> tuple[Tensor]:
        decoder = _decoder(self.model)
        for i, noise in enumerate(noises):
            decoder.noises._buffers[f"noise{i}"] = noise  # the trace follows the input
        return (self._call(self.model, x),)


class _Call(nn.Module):
    def __init__(self, model: nn.Module, call: Callable[..., tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.model = model
        self._call = call

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return self._call(self.model, *inputs)


def _rand(g: torch.Generator, shape: tuple[int, ...], low: float, high: float) -> Tensor:
    return torch.rand(shape, generator=g) * (high - low) + low


def graph_spec(module: nn.Module, descriptor: ModelDescriptor) -> GraphSpec:
    """The export plan for ``module``; raises ValueError for a network the engines do not run."""
    g = torch.Generator().manual_seed(0)
    low, high = descriptor.input_range
    purpose = descriptor.purpose
    batch_axis = {0: "batch"}
    if purpose is Purpose.FACE_RESTORATION:
        size = descriptor.input_size or 512
        # batch 2: traces the batch-independent form of the StyleGAN2 modulation
        x = _rand(g, (2, 3, size, size), low, high)
        if descriptor.takes_noise and _decoder(module) is not None:
            stored = [n.detach().float().cpu().clone() for n in noise_buffers(module)]
            names = [f"noise{i}" for i in range(len(stored))]
            if type(_decoder(module)).__name__ == "StyleGAN2GeneratorClean":
                # One face per call, all shapes fixed: at batch 1 the traced modulation is the
                # official per-sample weight (w * s * demod), which OpenVINO ran 8 % faster in CPU
                # time than the batch form (two elementwise passes over every activation);
                # EngineModule runs a batch face by face (CPU batches are 1 by default). The other
                # decoders do not export at a fixed batch 1 (a kernel of unknown shape).
                fresh = [torch.randn(1, 1, *n.shape[-2:], generator=g) for n in stored]
                return GraphSpec(["input", *names], ["output"], {}, [(x[:1].clone(), *fresh), (x[1:].clone(), *stored)],
                                 call=lambda m, *inputs: m(*inputs), one_face=True)
            fresh = [torch.randn(2, 1, *n.shape[-2:], generator=g) for n in stored]
            axes = {"input": batch_axis, "output": batch_axis, **{n: {0: "noise_batch"} for n in names}}
            # fresh noise at batch 2 (traced), the stored noise at batch 1: both noises and batches
            return GraphSpec(["input", *names], ["output"], axes, [(x, *fresh), (x[:1].clone(), *stored)],
                             call=lambda m, *inputs: m(*inputs))
        return GraphSpec(["input"], ["output"], {"input": batch_axis, "output": batch_axis}, [(x,), (x[:1].clone(),)],
                         call=lambda m, x: (m(x)[0],))
    if purpose is Purpose.UPSCALING:
        multiple = descriptor.size_multiple or 1
        spatial = {0: "batch", 2: "height", 3: "width"}
        out_spatial = {0: "batch", 2: "out_height", 3: "out_width"}
        examples = [(_rand(g, (1, 3, 16 * multiple, 16 * multiple), low, high),),
                    (_rand(g, (1, 3, 10 * multiple, 22 * multiple), low, high),)]
        return GraphSpec(["input"], ["output"], {"input": spatial, "output": out_spatial}, examples,
                         call=lambda m, x: (m(x),))
    if purpose is Purpose.FACE_DETECTION:
        spatial = {0: "batch", 2: "height", 3: "width"}
        examples = [(_rand(g, (1, 3, 160, 128), low, high),), (_rand(g, (1, 3, 96, 224), low, high),)]
        outs = ["loc", "conf", "landmarks"]
        axes = {"input": spatial, **{n: {0: "batch", 1: "priors"} for n in outs}}
        return GraphSpec(["input"], outs, axes, examples, call=lambda m, x: tuple(m(x)))
    if purpose is Purpose.FACE_PARSING:
        size = descriptor.input_size or 512
        x = _rand(g, (1, 3, size, size), low, high)
        # any size: the pipeline feeds 512 px, reduced models (tests, fixtures) their own size
        spatial = {0: "batch", 2: "height", 3: "width"}
        return GraphSpec(["input"], ["logits", "image"], {"input": spatial, "logits": spatial, "image": spatial},
                         [(x,)], call=lambda m, x: tuple(m(x)))
    if purpose is Purpose.IDENTITY:
        size = descriptor.input_size or 128
        x = _rand(g, (2, descriptor.input_channels, size, size), low, high)
        return GraphSpec(["input"], ["embedding"], {"input": batch_axis, "embedding": batch_axis},
                         [(x,), (x[:1].clone(),)], call=lambda m, x: (m(x),))
    raise ValueError(f"{descriptor} does not run on a graph engine")


def traceable(module: nn.Module, descriptor: ModelDescriptor, spec: GraphSpec) -> nn.Module:
    """An fp32 CPU copy of ``module`` whose forward takes the spec's inputs, for export and checks."""
    model = copy.deepcopy(module).float().cpu().eval()
    for layer in model.modules():
        if isinstance(layer, ModulatedConv2d):
            layer.fold_weight_norms = True  # constant weight norms: fewer passes per call (see there)
    if "noise0" in spec.input_names:
        return _WithNoiseInputs(model, lambda m, x: m(x, return_rgb=False, randomize_noise=False)[0]).eval()
    return _Call(model, spec.call).eval()  # eval: a wrapper in training mode would put BatchNorm back there


def export_graph(module: nn.Module, spec: GraphSpec) -> bytes:
    """The ONNX bytes of ``module`` (as made by :func:`traceable`) traced with the first example."""
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to serialise)
    except ImportError:
        raise ImportError("onnx is not installed: pip install 'facerestore[export]'") from None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the tracer notes each Python branch on a shape; the examples pick the general path
        # public API that torch.jit.__all__ leaves out
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # pyright: ignore[reportPrivateImportUsage]
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        with torch.no_grad():
            # a file object is documented for f; the stubs name only paths
            torch.onnx.export(module, spec.examples[0], buffer,  # pyright: ignore[reportArgumentType]
                              dynamo=False, input_names=spec.input_names, output_names=spec.output_names,
                              dynamic_axes=spec.dynamic_axes, opset_version=OPSET, do_constant_folding=True)
    return buffer.getvalue()
