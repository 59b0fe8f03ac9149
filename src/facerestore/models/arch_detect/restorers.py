"""Detection rules for CodeFormer, RestoreFormer++ and GPEN.

As in ``others``: the constructor arguments are read from tensor shapes and key counts, then
confirmed by building the module on the meta device and comparing every entry name and shape, so
a rule never claims another family's file. What leaves no trace in the weights is set as the
official inference sets it, and named below.
"""
from __future__ import annotations

import math
from typing import Any

from ...archs.codeformer import CHANNELS as CODEFORMER_SIZES
from ...archs.codeformer import CodeFormer
from ...archs.gpen import FullGenerator
from ...archs.restoreformerpp import RestoreFormerPlusPlus
from ...archs.stylegan2 import BASE_CHANNELS
from . import ArchRule, StateDict
from .gfpgan import _number
from .others import _conforms, _count, detect_restoreformer


def detect_codeformer(sd: StateDict) -> dict[str, Any] | None:
    keys = {"position_emb", "feat_emb.weight", "idx_pred_layer.1.weight", "quantize.embedding.weight",
            "encoder.blocks.0.weight", "generator.blocks.0.weight"}
    if not keys <= sd.keys():
        return None
    latent_size, dim_embd = sd["position_emb"].shape
    sizes = {k.split(".")[1] for k in sd if k.startswith("fuse_convs_dict.")}
    if not sizes <= CODEFORMER_SIZES.keys():
        return None
    kwargs = {
        "dim_embd": int(dim_embd),
        "n_head": 8,  # no weight depends on it; 8 in the release (inference_codeformer.py)
        "n_layers": _count(sd, r"ft_layers\.(\d+)\.linear1\.weight"),
        "codebook_size": int(sd["idx_pred_layer.1.weight"].shape[0]),
        "latent_size": int(latent_size),
        "connect_list": sorted(sizes, key=int),
    }
    return kwargs if _conforms(CodeFormer, kwargs, sd) else None


def detect_restoreformerpp(sd: StateDict) -> dict[str, Any] | None:
    """RestoreFormer's weights plus decoder attention at a level where the encoder has none (the
    extra scale of ``ex_multi_scale_num``); without it the file is RestoreFormer (v1)."""
    if "decoder.conv_out.weight" not in sd:
        return None
    num_levels = _count(sd, r"decoder\.up\.(\d+)\.block\.0\.conv1\.weight")
    decoder_levels = [i for i in range(num_levels) if f"decoder.up.{i}.attn.0.q.weight" in sd]
    encoder_levels = [i for i in range(num_levels) if f"encoder.down.{i}.attn.0.q.weight" in sd]
    extra = sorted(set(decoder_levels) - set(encoder_levels))
    if len(extra) != 1 or not encoder_levels:
        return None
    # Read the shared arguments as for RestoreFormer, from the weights without the extra level.
    base = detect_restoreformer({k: v for k, v in sd.items() if not k.startswith(f"decoder.up.{extra[0]}.attn.")})
    if base is None:
        return None
    # the official loop doubles the last attention scale ex_multi_scale_num times
    ex = math.log2(base["resolution"] >> extra[0]) - math.log2(base["attn_resolutions"][-1])
    if ex < 1 or ex != int(ex):
        return None
    # head_size: no weight depends on it; 4 in the release (configs/RestoreFormerPlusPlus.yaml)
    kwargs = {**base, "head_size": 4, "ex_multi_scale_num": int(ex)}
    return kwargs if _conforms(RestoreFormerPlusPlus, kwargs, sd) else None


def detect_gpen(sd: StateDict) -> dict[str, Any] | None:
    keys = {"generator.input.input", "final_linear.0.weight", "ecd0.0.0.weight", "generator.style.1.weight"}
    if not keys <= sd.keys():
        return None
    log_size = _count(sd, r"ecd(\d+)\.0\.\d+\.weight") + 1
    size = 2**log_size
    if size not in BASE_CHANNELS or size < 8:
        return None
    narrow = _number(sd["generator.input.input"].shape[1] / 512)
    c_size = sd["ecd0.0.0.weight"].shape[0]  # int(base * channel_multiplier * narrow) at the input size
    cm = _number(c_size / (BASE_CHANNELS[size] * narrow)) if size >= 64 else 2
    kernel = sd.get("ecd1.0.0.kernel")
    taps = 4 if kernel is None else int(kernel.shape[0])
    kwargs = {
        "size": size,
        "style_dim": int(sd["final_linear.0.weight"].shape[0]),
        "n_mlp": max(_count(sd, r"generator\.style\.(\d+)\.weight") - 1, 0),  # entry 0 is the pixel norm
        "channel_multiplier": cm,
        "narrow": narrow,
        # lr_mlp leaves no trace in the weights: the default 0.01, as every GPEN release.
        # The FIR kernels are in the file (and used from there), so only their length matters here.
        "blur_kernel": (1, 3, 3, 1) if taps == 4 else tuple([1] * taps),
    }
    return kwargs if _conforms(FullGenerator, kwargs, sd) else None


RULES: list[ArchRule] = [
    ArchRule("CodeFormer", CodeFormer, detect_codeformer),
    ArchRule("RestoreFormerPlusPlus", RestoreFormerPlusPlus, detect_restoreformerpp),
    ArchRule("FullGenerator", FullGenerator, detect_gpen),
]
