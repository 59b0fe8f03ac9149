"""Detection rules for facexlib's networks: RetinaFace (both backbones) and ParseNet."""
from __future__ import annotations

from typing import Any

from facerestore.archs.parsenet import ParseNet
from facerestore.archs.retinaface import RetinaFace
from facerestore.models.arch_detect import ArchRule, StateDict


def _detect_retinaface(sd: StateDict) -> dict[str, Any] | None:
    heads = ("ClassHead.0.conv1x1.weight", "BboxHead.0.conv1x1.weight", "LandmarkHead.0.conv1x1.weight")
    if not all(k in sd for k in (*heads, "fpn.output1.0.weight", "ssh1.conv3X3.0.weight")):
        return None
    # The backbone's names tell the two apart: torchvision ResNet layers vs MobileNet stages.
    if "body.layer4.0.conv1.weight" in sd:
        return {"network_name": "resnet50"}
    if "body.stage3.0.0.weight" in sd:
        return {"network_name": "mobile0.25"}
    return None


def _count_blocks(sd: StateDict, prefix: str, start: int = 0) -> int:
    """Number of residual blocks ``prefix.{i}``, i >= start (each has ``conv1.conv2d.weight``)."""
    n = 0
    while f"{prefix}.{start + n}.conv1.conv2d.weight" in sd:
        n += 1
    return n


def _detect_parsenet(sd: StateDict) -> dict[str, Any] | None:
    if not all(k in sd for k in ("encoder.0.conv2d.weight", "out_mask_conv.conv2d.weight",
                                 "out_img_conv.conv2d.weight")):
        return None
    base_ch = sd["encoder.0.conv2d.weight"].shape[0]
    down_steps = _count_blocks(sd, "encoder", start=1)  # encoder.0 is the stem conv
    up_steps = _count_blocks(sd, "decoder")
    res_depth = _count_blocks(sd, "body")
    if res_depth == 0:
        return None

    # Only the ratios size / min_feat_size are stored; min_feat_size = 32 (the default) fixes them.
    min_feat_size = 32
    kwargs: dict[str, Any] = {
        "in_size": min_feat_size * 2 ** down_steps,
        "out_size": min_feat_size * 2 ** up_steps,
        "min_feat_size": min_feat_size,
        "base_ch": base_ch,
        "parsing_ch": sd["out_mask_conv.conv2d.weight"].shape[0],
        "res_depth": res_depth,
    }

    # ch_range: clipping is visible where a stage is narrower (wider) than base_ch * 2**k says.
    body_ch = sd["body.0.conv1.conv2d.weight"].shape[0]
    out_ch = sd["out_mask_conv.conv2d.weight"].shape[1]
    max_ch = body_ch if body_ch < base_ch * 2 ** down_steps else max(256, body_ch)
    unclipped_out = base_ch * 2 ** down_steps // 2 ** up_steps
    min_ch = out_ch if out_ch > unclipped_out else min(32, base_ch, out_ch)
    kwargs["ch_range"] = (min_ch, max_ch)

    conv1 = "body.0.conv1"
    if f"{conv1}.norm.norm.running_mean" in sd:
        kwargs["norm_type"] = "bn"
    elif f"{conv1}.norm.norm.weight" in sd:
        kwargs["norm_type"] = "gn"
    else:
        kwargs["norm_type"] = "none"  # "in" (affine=False) stores nothing either; not distinguishable
    # PReLU stores a slope; ReLU / LeakyReLU / SELU store nothing, so the released choice is assumed.
    kwargs["relu_type"] = "PReLU" if f"{conv1}.relu.func.weight" in sd else "LeakyReLU"
    return kwargs


RULES: list[ArchRule] = [
    ArchRule("RetinaFace", RetinaFace, _detect_retinaface),
    ArchRule("ParseNet", ParseNet, _detect_parsenet),
]
