"""Recognise GFPGAN generators and the GFPGAN training discriminators from their state dicts.

Every size argument is read from tensor shapes and key counts. A few constructor arguments
leave no trace in a state dict; they are set as the official inference code (``GFPGANer``) sets
them, and each is named in a comment below.
"""
from __future__ import annotations

import re
from typing import Any

from ...archs.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from ...archs.gfpgan import GFPGANBilinear, GFPGANv1, GFPGANv1Clean
from ...archs.stylegan2 import BASE_CHANNELS
from . import ArchRule, StateDict


def _indices(sd: StateDict, prefix: str) -> set[int]:
    """The integers i of keys ``{prefix}.{i}.…``."""
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return {int(m[1]) for k in sd if (m := pat.match(k))}


def _number(x: float) -> float:
    """Give integral values as int (the official kwargs are ints: narrow=1, channel_multiplier=2)."""
    return int(round(x)) if abs(x - round(x)) < 1e-6 else x


def _size_kwargs(sd: StateDict, c4: int, c_out: int, out_size: int, default_cm: float) -> dict[str, Any]:
    """narrow from the 4x4 width int(512 * narrow); channel_multiplier from the out_size width
    int(base * cm * narrow). Below 64 px the multiplier changes nothing, so the default is kept."""
    narrow = _number(c4 / 512)
    cm = _number(c_out / (BASE_CHANNELS[out_size] * narrow)) if out_size >= 64 else default_cm
    return {"channel_multiplier": cm, "narrow": narrow}


def _gfpgan_kwargs(sd: StateDict) -> dict[str, Any] | None:
    """Size kwargs shared by the three GFPGAN variants (their entry names agree where read here)."""
    needed = ("stylegan_decoder.constant_input.weight", "stylegan_decoder.style_conv1.modulated_conv.modulation.weight",
              "final_linear.weight", "condition_scale.0.0.weight", "condition_scale.0.2.weight")
    if not all(k in sd for k in needed):
        return None
    log_size = len(_indices(sd, "conv_body_down")) + 2
    out_size = 2**log_size
    last_rgb = f"stylegan_decoder.to_rgbs.{log_size - 3}.modulated_conv.weight"  # (1, 3, C_out, 1, 1)
    if out_size not in BASE_CHANNELS or last_rgb not in sd:
        return None
    num_style_feat = sd["stylegan_decoder.style_conv1.modulated_conv.modulation.weight"].shape[1]
    num_latent = 2 * log_size - 2
    w_out = sd["final_linear.weight"].shape[0]
    if w_out not in (num_style_feat, num_latent * num_style_feat):
        return None
    sft_in, sft_out = sd["condition_scale.0.0.weight"].shape[0], sd["condition_scale.0.2.weight"].shape[0]
    return {
        "out_size": out_size,
        "num_style_feat": num_style_feat,
        **_size_kwargs(sd, sd["stylegan_decoder.constant_input.weight"].shape[1], sd[last_rgb].shape[2], out_size,
                       default_cm=1),
        "num_mlp": len(_indices(sd, "stylegan_decoder.style_mlp")),
        "different_w": w_out != num_style_feat,  # one w per decoder layer
        "sft_half": sft_out == sft_in,  # SFT maps cover half the channels, else scale/shift for all
        # Not stored: whether the U-Net's code skips the style MLP. Every released GFPGAN model and
        # GFPGANer use True (the constructor default, False, would feed it through the MLP).
        "input_is_latent": True,
    }


def detect_clean(sd: StateDict) -> dict[str, Any] | None:
    """GFPGANv1Clean: plain convs (``conv_body_first.weight``) and StyleConv ``bias`` (1, C, 1, 1)."""
    if "conv_body_first.weight" not in sd or "stylegan_decoder.style_conv1.bias" not in sd:
        return None
    kwargs = _gfpgan_kwargs(sd)
    # fix_decoder only freezes decoder parameters for training; GFPGANer uses False.
    return None if kwargs is None else {**kwargs, "fix_decoder": False}


def _detect_equalized(sd: StateDict) -> dict[str, Any] | None:
    """GFPGANv1 / GFPGANBilinear: ConvLayer entries (``conv_body_first.0.weight``), FusedLeakyReLU biases."""
    if "conv_body_first.0.weight" not in sd or "stylegan_decoder.style_conv1.activate.bias" not in sd:
        return None
    # Not stored: lr_mlp (a run-time multiplier of the style MLP, unused with input_is_latent)
    # and GFPGANv1's resample_kernel (a fixed blur); the constructor defaults 0.01 and (1, 3, 3, 1)
    # are what the official models were trained with.
    return _gfpgan_kwargs(sd)


# GFPGANv1 and GFPGANBilinear have the same entries with the same shapes: they differ only in how
# they resample (FIR blur vs bilinear interpolation), and the blur kernel is not part of the
# official state dict. Nothing in the file tells them apart, so we follow the official inference
# script's pairing: the paper model (arch 'original') is channel_multiplier=1 and GFPGANer's
# 'bilinear' arch is used with channel_multiplier=2. Callers who know better should name the arch.
def detect_v1(sd: StateDict) -> dict[str, Any] | None:
    kwargs = _detect_equalized(sd)
    if kwargs is None or kwargs["channel_multiplier"] != 1:
        return None
    return {**kwargs, "fix_decoder": True}  # as GFPGANer builds it; training-only


def detect_bilinear(sd: StateDict) -> dict[str, Any] | None:
    kwargs = _detect_equalized(sd)
    if kwargs is None or kwargs["channel_multiplier"] == 1:
        return None
    return {**kwargs, "fix_decoder": False}  # as GFPGANer builds it; training-only


def detect_stylegan2_discriminator(sd: StateDict) -> dict[str, Any] | None:
    """conv_body.0 (1x1 ConvLayer from RGB) + ResBlocks down to 4x4 + minibatch-stddev head."""
    needed = ("conv_body.0.0.weight", "final_conv.0.weight", "final_conv.1.bias", "final_linear.0.weight",
              "final_linear.1.weight")
    if not all(k in sd for k in needed) or tuple(sd["conv_body.0.0.weight"].shape[1:]) != (3, 1, 1):
        return None
    out_size = 2 ** (len(_indices(sd, "conv_body")) - 1 + 2)
    if out_size not in BASE_CHANNELS:
        return None
    # Not stored: stddev_group (a batch grouping, default 4) and resample_kernel (default
    # (1, 3, 3, 1), what GFPGAN training uses).
    return {"out_size": out_size,
            **_size_kwargs(sd, sd["final_conv.1.bias"].shape[0], sd["conv_body.0.0.weight"].shape[0], out_size,
                           default_cm=2)}


_FACIAL_COMPONENT_KEYS = {
    "conv1.0.weight", "conv1.1.bias", "conv2.1.weight", "conv2.2.bias", "conv3.0.weight", "conv3.1.bias",
    "conv4.1.weight", "conv4.2.bias", "conv5.0.weight", "conv5.1.bias", "final_conv.0.weight", "final_conv.0.bias",
}


def detect_facial_component(sd: StateDict) -> dict[str, Any] | None:
    """Fixed-size network: the exact entry set, and RGB input to conv1."""
    if set(sd) != _FACIAL_COMPONENT_KEYS or tuple(sd["conv1.0.weight"].shape) != (64, 3, 3, 3):
        return None
    return {}


RULES: list[ArchRule] = [
    ArchRule("GFPGANv1Clean", GFPGANv1Clean, detect_clean),
    ArchRule("GFPGANv1", GFPGANv1, detect_v1),
    ArchRule("GFPGANBilinear", GFPGANBilinear, detect_bilinear),
    ArchRule("StyleGAN2Discriminator", StyleGAN2Discriminator, detect_stylegan2_discriminator),
    ArchRule("FacialComponentDiscriminator", FacialComponentDiscriminator, detect_facial_component),
]
