"""Convert a GFPGANBilinear state dict into an equivalent GFPGANv1Clean one (the official v1.2 route).

GFPGANBilinear uses "equalized" layers: weights are stored ~N(0, 1) and multiplied at run time by
1/sqrt(fan_in) (times ``lr_mlp`` in the mapping MLP), and its activations are
``sqrt(2) * leaky_relu(z + b)``. GFPGANv1Clean uses plain layers. Both compute the same function
once the run-time scales are folded into the stored weights and every ``sqrt(2)`` is pushed into
the layer before the activation, using ``sqrt(2) * lrelu(z) == lrelu(sqrt(2) * z)``:

* conv/linear weights: times 1/sqrt(fan_in) (the equalization scale);
* a layer followed by a scaled activation whose output feeds a clean ``lrelu`` only: times sqrt(2)
  (weights and bias);
* residual blocks: ``(sqrt2*lrelu(conv2) + skip) / sqrt2 == lrelu(conv2) + skip / sqrt2``, so
  ``conv2`` keeps its scale and ``skip`` is divided by sqrt(2);
* StyleConv: clean computes ``lrelu(sqrt2 * conv + w * noise + b)``, so the noise strength and
  the bias are multiplied by sqrt(2) (the bias also moves from ``activate.bias`` (C,) to
  ``bias`` (1, C, 1, 1));
* style MLP: ``EqualLinear`` i becomes ``nn.Linear`` at index 2i - 1 (a LeakyReLU sits between).

Noise buffers, the constant input and the ToRGB biases are copied unchanged.
"""
from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import Tensor

from ..io.atomic import atomic_path

_SQRT2 = math.sqrt(2)


def _equal_scale(v: Tensor) -> float:
    """1/sqrt(fan_in) of a weight: (out, in[, k, k]) or a modulated conv's (1, out, in, k, k)."""
    fan_in = v[0, 0].numel() if v.ndim == 5 else v[0].numel()
    return 1 / math.sqrt(fan_in)


def _rules(lr_mlp: float) -> list[tuple[str, str | Callable[[re.Match], str], Callable[[Tensor], Tensor]]]:
    eq = lambda factor=1.0: (lambda v: v * _equal_scale(v) * factor)  # noqa: E731
    times = lambda factor: (lambda v: v * factor)  # noqa: E731
    same = lambda v: v.clone()  # noqa: E731
    d = r"stylegan_decoder\."
    return [
        # decoder (StyleGAN2GeneratorBilinear -> StyleGAN2GeneratorClean)
        (d + r"style_mlp\.(\d+)\.weight", lambda m: f"stylegan_decoder.style_mlp.{2 * int(m[1]) - 1}.weight",
         lambda v: v * (_equal_scale(v) * lr_mlp) * _SQRT2),
        (d + r"style_mlp\.(\d+)\.bias", lambda m: f"stylegan_decoder.style_mlp.{2 * int(m[1]) - 1}.bias",
         lambda v: v * lr_mlp * _SQRT2),
        (d + r"(.+)\.modulation\.weight", r"stylegan_decoder.\1.modulation.weight", eq()),
        (d + r"(.+)\.modulation\.bias", r"stylegan_decoder.\1.modulation.bias", same),
        (d + r"(.+)\.modulated_conv\.weight", r"stylegan_decoder.\1.modulated_conv.weight", eq()),
        (d + r"(style_conv1|style_convs\.\d+)\.activate\.bias", r"stylegan_decoder.\1.bias",
         lambda v: (v * _SQRT2).view(1, -1, 1, 1)),
        (d + r"(style_conv1|style_convs\.\d+)\.weight", r"stylegan_decoder.\1.weight", times(_SQRT2)),
        (d + r"(constant_input\.weight|to_rgb1\.bias|to_rgbs\.\d+\.bias|noises\.noise\d+)", r"stylegan_decoder.\1",
         same),
        # U-Net: ConvLayer (conv + sqrt2-scaled activation) -> ConvLReLU / conv followed by lrelu
        (r"(conv_body_first|final_conv)\.0\.weight", r"\1.weight", eq(_SQRT2)),
        (r"(conv_body_first|final_conv)\.1\.bias", r"\1.bias", times(_SQRT2)),
        (r"(conv_body_(?:down|up)\.\d+\.conv1)\.0\.weight", r"\1.weight", eq(_SQRT2)),
        (r"(conv_body_(?:down|up)\.\d+\.conv1)\.1\.bias", r"\1.bias", times(_SQRT2)),
        (r"(conv_body_down\.\d+\.conv2)\.1\.weight", r"\1.weight", eq()),
        (r"(conv_body_down\.\d+\.conv2)\.2\.bias", r"\1.bias", same),
        (r"(conv_body_up\.\d+\.conv2)\.weight", r"\1.weight", eq()),
        (r"(conv_body_up\.\d+\.conv2)\.activation\.bias", r"\1.bias", same),
        (r"(conv_body_down\.\d+\.skip)\.1\.weight", r"\1.weight", lambda v: v * _equal_scale(v) / _SQRT2),
        (r"(conv_body_up\.\d+\.skip)\.weight", r"\1.weight", lambda v: v * _equal_scale(v) / _SQRT2),
        (r"(toRGB\.\d+|final_linear)\.weight", r"\1.weight", eq()),
        (r"(toRGB\.\d+|final_linear)\.bias", r"\1.bias", same),
        # SFT branches: EqualConv -> ScaledLeakyReLU -> EqualConv
        (r"(condition_(?:scale|shift)\.\d+\.0)\.weight", r"\1.weight", eq(_SQRT2)),
        (r"(condition_(?:scale|shift)\.\d+\.0)\.bias", r"\1.bias", times(_SQRT2)),
        (r"(condition_(?:scale|shift)\.\d+\.2)\.weight", r"\1.weight", eq()),
        (r"(condition_(?:scale|shift)\.\d+\.2)\.bias", r"\1.bias", same),
    ]


def bilinear_to_clean(state_dict: Mapping[str, Tensor], lr_mlp: float = 0.01) -> dict[str, Tensor]:
    """Map a GFPGANBilinear state dict onto GFPGANv1Clean's names with equivalent values.

    The result loads strictly into a ``GFPGANv1Clean`` built with the same out_size,
    num_style_feat, channel_multiplier, narrow, sft_half and different_w. ``lr_mlp`` is the
    bilinear model's mapping-MLP learning-rate multiplier (not stored in checkpoints; the
    official default 0.01). Raises ValueError on an entry GFPGANBilinear does not have.
    """
    rules = [(re.compile(p), repl, fn) for p, repl, fn in _rules(lr_mlp)]
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        for pattern, repl, fn in rules:
            m = pattern.fullmatch(key)
            if m:
                with torch.no_grad():
                    out[m.expand(repl) if isinstance(repl, str) else repl(m)] = fn(value)
                break
        else:
            raise ValueError(f"not a GFPGANBilinear state dict: unexpected entry {key!r}")
    return out


def convert_file(src: str | Path, dst: str | Path, *, check_size: int | None = None) -> str:
    """Convert a GFPGANBilinear weights file into a GFPGANv1Clean one; returns a one-line report.

    The result is written atomically as ``{'params_ema': state_dict}`` (``.pth``) or as
    safetensors, after checking that it loads strictly and that both models give the same image
    (stored noise) on a fixed random input of ``check_size`` pixels (default: the model's size).
    """
    from ..archs.gfpgan import GFPGANBilinear, GFPGANv1Clean
    from .loading import CheckpointError, canonicalize, detect_architecture, errors_naming, read_checkpoint

    src, dst = Path(src), Path(dst)
    with errors_naming(src):
        state = canonicalize(read_checkpoint(src))
        rule, kwargs = detect_architecture(state)
    # GFPGANv1 and GFPGANBilinear have identical entries; either way the tensors are bilinear-layout
    # (a paper-model file would convert, but to bilinear resampling: its FIR blur is not kept).
    if rule.name not in ("GFPGANBilinear", "GFPGANv1"):
        raise CheckpointError(f"{src}: is {rule.name}, not a GFPGANBilinear checkpoint")
    shared = {k: v for k, v in kwargs.items() if k in inspect.signature(GFPGANv1Clean).parameters}
    bilinear = GFPGANBilinear(**{**shared, "lr_mlp": kwargs.get("lr_mlp", 0.01)}).eval()
    bilinear.load_state_dict(state, strict=True)
    clean_state = bilinear_to_clean(state, lr_mlp=kwargs.get("lr_mlp", 0.01))
    clean = GFPGANv1Clean(**shared).eval()
    clean.load_state_dict(clean_state, strict=True)

    size = check_size or shared.get("out_size", 512)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        expected = bilinear(x, return_rgb=False, randomize_noise=False)[0]
        got = clean(x, return_rgb=False, randomize_noise=False)[0]
    diff = (expected - got).abs().max().item()
    if diff > 1e-3 * max(1.0, expected.abs().max().item()):
        raise RuntimeError(f"conversion check failed: outputs differ by {diff:.3g}")

    with atomic_path(dst) as tmp:
        if dst.suffix.lower() == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in clean_state.items()}, str(tmp))
        else:
            torch.save({"params_ema": clean_state}, tmp)
    return (f"{src.name} (GFPGANBilinear, {len(state)} tensors) -> {dst} (GFPGANv1Clean); "
            f"max output difference {diff:.2g}")


def unpickle_to_safetensors(src: str | Path, dst: str | Path) -> str:
    """Rewrite a checkpoint that ``torch.load(weights_only=True)`` refuses (a training checkpoint with
    Python objects beside the weights) as safetensors holding only its network; returns a report.

    This unpickles ``src`` with full trust, once: run it only on a file from a source you trust.
    The network is taken as loading takes it (wrappers, ``module.`` and Lightning prefixes, training
    entries dropped by name), must be a known architecture, and must load strictly; the output then
    loads without any unpickling.
    """
    from .loading import CheckpointError, build_from_state_dict, canonicalize, errors_naming

    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{dst}: the output must be a .safetensors file")
    checkpoint = torch.load(src, map_location="cpu", weights_only=False)  # the trusted, one-time step
    with errors_naming(src):
        state = canonicalize(checkpoint)
        model = build_from_state_dict(state)
    from safetensors.torch import save_file

    with atomic_path(dst) as tmp:
        # clone: safetensors refuses tensors that share storage
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(tmp))
    return f"{src.name} -> {dst} ({type(model).__name__}, {len(state)} tensors); load {dst.name} from now on"
