"""Detection rules for RRDBNet (Real-ESRGAN), ResNetArcFace and RestoreFormer.

Each ``detect_*`` reads the constructor arguments from tensor shapes and key counts, then
confirms them: the module built with those arguments on the meta device (no memory, no real
init) must have exactly the state dict's entry names and shapes. So a rule never claims another
family's checkpoint, and a checkpoint it claims loads with ``strict=True``.
"""
from __future__ import annotations

import contextlib
import re
import threading
from typing import Any

import torch
from torch import nn

from facerestore.archs.arcface import ResNetArcFace
from facerestore.archs.restoreformer import RestoreFormer
from facerestore.archs.rrdbnet import UNSHUFFLE_FACTOR, RRDBNet
from facerestore.models.arch_detect import ArchRule, StateDict


def _count(sd: StateDict, pattern: str) -> int:
    """1 + the largest index captured by ``pattern`` (a regex with one group) in sd's keys; 0 if none."""
    rx = re.compile(pattern)
    indices = [int(m.group(1)) for key in sd if (m := rx.fullmatch(key))]
    return max(indices) + 1 if indices else 0


_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _without_weight_init():
    """Skip ``torch.nn.init`` while building a shape-only module: on the meta device the init
    functions cost ~3 s on first use (torch's decompositions load) and give nothing here. The
    lock keeps concurrent loads (a web worker's threads) from restoring each other's patches."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    with _INIT_LOCK:
        saved = {n: getattr(nn.init, n) for n in names}
        try:
            for n in names:
                setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
            yield
        finally:
            for n, fn in saved.items():
                setattr(nn.init, n, fn)


def _conforms(module_class: type[nn.Module], kwargs: dict[str, Any], sd: StateDict) -> bool:
    """Whether ``module_class(**kwargs)`` has exactly ``sd``'s names and shapes (built on meta)."""
    try:
        with torch.device("meta"), _without_weight_init():
            expected = module_class(**kwargs).state_dict()
    except ValueError:  # arguments the module rejects (e.g. an unsupported scale)
        return False
    return expected.keys() == sd.keys() and all(expected[k].shape == sd[k].shape for k in sd)


def detect_rrdbnet(sd: StateDict) -> dict[str, Any] | None:
    if not {"conv_first.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.weight"} <= sd.keys():
        return None
    num_feat, first_in = sd["conv_first.weight"].shape[:2]
    num_out_ch = sd["conv_last.weight"].shape[0]
    # conv_first sees num_in_ch * r^2 channels (r = pixel-unshuffle factor: 1, 2, 4 for scale
    # 4, 2, 1). num_in_ch and r are not separable from one shape, so assume num_in_ch ==
    # num_out_ch, true of every released model; otherwise fall back to scale 4 (no unshuffle).
    scale, num_in_ch = 4, first_in
    for s, r in UNSHUFFLE_FACTOR.items():
        if first_in == num_out_ch * r * r:
            scale, num_in_ch = s, num_out_ch
    grow = sd.get("body.0.rdb1.conv1.weight")
    kwargs = {
        "num_in_ch": int(num_in_ch),
        "num_out_ch": int(num_out_ch),
        "scale": scale,
        "num_feat": int(num_feat),
        "num_block": _count(sd, r"body\.(\d+)\.rdb1\.conv1\.weight"),
        "num_grow_ch": int(grow.shape[0]) if grow is not None else 32,  # no blocks: any value fits
    }
    return kwargs if _conforms(RRDBNet, kwargs, sd) else None


def detect_arcface(sd: StateDict) -> dict[str, Any] | None:
    if not {"conv1.weight", "layer1.0.bn0.weight", "fc5.weight", "bn5.weight"} <= sd.keys():
        return None
    kwargs = {
        "block": "IRBlock",  # bn0 exists only in IR blocks, the one type the model supports
        "layers": [_count(sd, rf"layer{i}\.(\d+)\.conv1\.weight") for i in range(1, 5)],
        "use_se": "layer1.0.se.fc.0.weight" in sd,
    }
    return kwargs if _conforms(ResNetArcFace, kwargs, sd) else None


def detect_restoreformer(sd: StateDict) -> dict[str, Any] | None:
    keys = {"quantize.embedding.weight", "quant_conv.weight", "encoder.conv_in.weight", "decoder.conv_out.weight"}
    if not keys <= sd.keys():
        return None
    n_embed, embed_dim = sd["quantize.embedding.weight"].shape
    ch, in_channels = sd["encoder.conv_in.weight"].shape[:2]
    num_levels = _count(sd, r"encoder\.down\.(\d+)\.block\.0\.conv1\.weight")
    ch_mult = tuple(int(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0]) // ch for i in range(num_levels))
    attn_levels = [i for i in range(num_levels) if f"encoder.down.{i}.attn.0.q.weight" in sd]
    # Not inferable: head_size (no parameter depends on it; 8 is the released model's), and
    # resolution apart from attn_resolutions (only which levels get attention matters, so
    # resolution stays 512 and attn_resolutions is expressed at that resolution). dropout and
    # fix_* do not change inference.
    resolution = 512
    kwargs = {
        "n_embed": int(n_embed),
        "embed_dim": int(embed_dim),
        "ch": int(ch),
        "out_ch": int(sd["decoder.conv_out.weight"].shape[0]),
        "ch_mult": ch_mult,
        "num_res_blocks": _count(sd, r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight"),
        "attn_resolutions": tuple(resolution >> i for i in attn_levels),
        "in_channels": int(in_channels),
        "resolution": resolution,
        "z_channels": int(sd["quant_conv.weight"].shape[1]),
        "enable_mid": "encoder.mid.block_1.conv1.weight" in sd,
    }
    return kwargs if _conforms(RestoreFormer, kwargs, sd) else None


RULES: list[ArchRule] = [
    ArchRule("RRDBNet", RRDBNet, detect_rrdbnet),
    ArchRule("ResNetArcFace", ResNetArcFace, detect_arcface),
    ArchRule("RestoreFormer", RestoreFormer, detect_restoreformer),
]
