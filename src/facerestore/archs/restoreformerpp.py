"""RestoreFormer++ (Wang et al., TPAMI 2023): RestoreFormer with four-head attention and one more
attention scale in the decoder.

The official network is ``VQVAEGANMultiHeadTransformer`` (wzhouxiff/RestoreFormerPlusPlus,
``RestoreFormer/modules/vqvae/vqvae_arch.py``) with ``configs/RestoreFormerPlusPlus.yaml``. It is the
same encoder / codebook / decoder as RestoreFormer (``archs/restoreformer.py``, same parameter
names), built with ``head_size=4`` and ``ex_multi_scale_num=1``: the decoder also attends at 32x32,
its queries there coming from the encoder's 32x32 output (the degraded face at that scale).
"""
from __future__ import annotations

from typing import Sequence

from .restoreformer import RestoreFormer


class RestoreFormerPlusPlus(RestoreFormer):
    """(B, 3, 512, 512) in [-1, 1] -> ``(image, None)``; the official constructor and defaults."""

    def __init__(
        self,
        n_embed: int = 1024,
        embed_dim: int = 256,
        ch: int = 64,
        out_ch: int = 3,
        ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.0,
        in_channels: int = 3,
        resolution: int = 512,
        z_channels: int = 256,
        double_z: bool = False,
        enable_mid: bool = True,
        fix_decoder: bool = False,
        fix_codebook: bool = True,
        fix_encoder: bool = False,
        head_size: int = 4,
        ex_multi_scale_num: int = 1,
    ) -> None:
        super().__init__(n_embed=n_embed, embed_dim=embed_dim, ch=ch, out_ch=out_ch, ch_mult=ch_mult,
                         num_res_blocks=num_res_blocks, attn_resolutions=attn_resolutions, dropout=dropout,
                         in_channels=in_channels, resolution=resolution, z_channels=z_channels, double_z=double_z,
                         enable_mid=enable_mid, fix_decoder=fix_decoder, fix_codebook=fix_codebook,
                         fix_encoder=fix_encoder, head_size=head_size, ex_multi_scale_num=ex_multi_scale_num)
