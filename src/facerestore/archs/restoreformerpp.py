"""RestoreFormer++ (Wang et al., TPAMI 2023): RestoreFormer with four-head attention and one more
attention scale in the decoder.

The official network is ``VQVAEGANMultiHeadTransformer`` (wzhouxiff/RestoreFormerPlusPlus,
``RestoreFormer/modules/vqvae/vqvae_arch.py``) with ``configs/RestoreFormerPlusPlus.yaml``. It is the
same encoder / codebook / decoder as RestoreFormer (``archs/restoreformer.py``, same parameter
names), built with ``head_size=4`` and ``ex_multi_scale_num=1``: the decoder also attends at 32x32,
its queries there coming from the encoder's 32x32 output (the degraded face at that scale).
"""
from __future__ import annotations

from typing import Any

from .restoreformer import RestoreFormer


class RestoreFormerPlusPlus(RestoreFormer):
    """(B, 3, 512, 512) in [-1, 1] -> ``(image, None)``; the official constructor and defaults:
    RestoreFormer's, with ``head_size=4`` and ``ex_multi_scale_num=1`` (any of them may be given)."""

    def __init__(self, *, head_size: int = 4, ex_multi_scale_num: int = 1, **restoreformer: Any) -> None:
        super().__init__(head_size=head_size, ex_multi_scale_num=ex_multi_scale_num, **restoreformer)
