"""RestoreFormer (Wang et al., CVPR 2022) as shipped with GFPGAN (RestoreFormer.pth).

A VQGAN-style encoder / vector quantiser / decoder. The decoder's attention blocks are
cross-attention: queries come from the *encoder* features at the same depth (the degraded
face), keys and values from the decoder's features built on the quantised codes (the prior).
Parameter names follow the official state dict (``encoder.down.{i}.block.{j}``,
``encoder.mid.attn_1``, ``quantize.embedding``, ``decoder.up.{i}.attn.{j}``, ...).

The official encoder only hands two feature maps to the decoder, both from its middle
section: after ``mid.block_1`` (used by the attention blocks of the lowest-resolution decoder
level) and after ``mid.block_2`` (used by the decoder's ``mid.attn_1``). Attention at any other
level, or attention without the middle section, fails in the official forward; here the
constructor rejects such configurations.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .ops import fast_layout, wide


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class VectorQuantizer(nn.Module):
    """Replace each feature vector by its nearest codebook entry (L2), with a straight-through
    gradient. ``forward`` returns (z_q, commitment loss, code indices)."""

    def __init__(self, n_e: int, e_dim: int, beta: float = 0.25) -> None:
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(n_e, e_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_e, 1.0 / n_e)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, h, w = z.shape
        # Distances in fp32 whatever the dtype: in fp16/bf16 near-ties would pick other codes.
        z_flat = wide(z).permute(0, 2, 3, 1).reshape(-1, c)  # (B*H*W, C)
        codebook = wide(self.embedding.weight)  # (n_e, C)
        # |z - e|^2 expanded exactly as the official code does, so that near-ties pick the same code.
        dist = (
            z_flat.pow(2).sum(1, keepdim=True)
            + codebook.pow(2).sum(1)
            - 2 * z_flat @ codebook.t()
        )  # (B*H*W, n_e)
        indices = dist.argmin(1)
        z_q = self.embedding(indices).view(b, h, w, c).permute(0, 3, 1, 2)  # (B, C, H, W)
        loss = F.mse_loss(z_q.detach(), z) + self.beta * F.mse_loss(z_q, z.detach())
        z_q = z + (z_q - z).detach()  # straight-through estimator
        return z_q, loss, indices.view(b, h, w)


class ResnetBlock(nn.Module):
    """GroupNorm -> swish -> conv, twice, plus a (1x1-projected when channels change) skip."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place on fresh norm / conv outputs (skip + h == h + skip exactly)
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(self.dropout(F.silu(self.norm2(h), inplace=True)))
        return h.add_(x if self.nin_shortcut is None else self.nin_shortcut(x))


class MultiHeadAttnBlock(nn.Module):
    """Multi-head attention over the H*W positions with 1x1-conv projections and a residual.

    Self-attention when ``y`` is None; otherwise queries come from ``y`` (normalised by
    ``norm2``) and keys/values from ``x``. ``norm2`` exists (and is saved) in every block.
    """

    def __init__(self, in_channels: int, head_size: int = 1) -> None:
        super().__init__()
        if in_channels % head_size:
            raise ValueError(f"{in_channels} channels do not split into {head_size} heads")
        self.head_size = head_size
        self.norm1 = group_norm(in_channels)
        self.norm2 = group_norm(in_channels)
        self.q = nn.Conv2d(in_channels, in_channels, 1)
        self.k = nn.Conv2d(in_channels, in_channels, 1)
        self.v = nn.Conv2d(in_channels, in_channels, 1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        x_n = self.norm1(x)
        y_n = x_n if y is None else self.norm2(y)

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, heads, H*W, C/heads)
            return t.reshape(b, self.head_size, c // self.head_size, h * w).transpose(2, 3)

        out = F.scaled_dot_product_attention(heads(self.q(y_n)), heads(self.k(x_n)), heads(self.v(x_n)))
        out = out.transpose(2, 3).reshape(b, c, h, w)  # heads back to channels, in order
        return self.proj_out(out).add_(x)  # in place on the fresh conv output


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one pixel on the right and bottom only."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level(blocks: list[nn.Module], attns: list[nn.Module], **resample: nn.Module) -> nn.Module:
    """One resolution level, named as the official ``down.{i}`` / ``up.{i}`` containers
    (``resample`` is ``downsample=...`` or ``upsample=...``, absent on the last level)."""
    level = nn.Module()
    level.block = nn.ModuleList(blocks)
    level.attn = nn.ModuleList(attns)
    for name, module in resample.items():
        level.add_module(name, module)
    return level


def _middle(channels: int, head_size: int, dropout: float) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, dropout)
    mid.attn_1 = MultiHeadAttnBlock(channels, head_size)
    mid.block_2 = ResnetBlock(channels, channels, dropout)
    return mid


class MultiHeadEncoder(nn.Module):
    """Image (B, in_channels, R, R) -> (B, z, R/2^(L-1), R/2^(L-1)) plus the two middle
    features the decoder cross-attends to (None without a middle section)."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, attn_levels: set[int],
                 dropout: float, in_channels: int, z_out: int, enable_mid: bool, head_size: int,
                 kept_levels: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.kept_levels = kept_levels  # levels whose output (before downsampling) the decoder reads
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        block_in = ch
        for i, mult in enumerate(ch_mult):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, ch * mult, dropout))
                block_in = ch * mult
                if i in attn_levels:
                    attns.append(MultiHeadAttnBlock(block_in, head_size))
            last = i == len(ch_mult) - 1
            self.down.append(_level(blocks, attns, **({} if last else {"downsample": Downsample(block_in)})))
        self.mid = _middle(block_in, head_size, dropout) if enable_mid else None
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_out, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str | int, torch.Tensor]]:
        """Returns the latent and the features the decoder reads: ``"block_1"`` / ``"mid"`` (after
        the middle's first block / the whole middle) and, by level index, ``kept_levels`` outputs."""
        h = self.conv_in(x)
        skips: dict[str | int, torch.Tensor] = {}
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if i in self.kept_levels:
                skips[i] = h
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        if self.mid is not None:
            skips["block_1"] = self.mid.block_1(h)
            h = self.mid.block_2(self.mid.attn_1(skips["block_1"]))
            skips["mid"] = h
        return self.conv_out(F.silu(self.norm_out(h), inplace=True)), skips


class MultiHeadDecoderTransformer(nn.Module):
    """Quantised latent (B, z, r, r) -> image (B, out_ch, r*2^(L-1), r*2^(L-1)), cross-attending
    to the encoder's middle features."""

    def __init__(self, ch: int, out_ch: int, ch_mult: Sequence[int], num_res_blocks: int,
                 attn_levels: set[int], dropout: float, z_channels: int, enable_mid: bool,
                 head_size: int) -> None:
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = _middle(block_in, head_size, dropout) if enable_mid else None
        levels = []
        for i in reversed(range(len(ch_mult))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, ch * ch_mult[i], dropout))
                block_in = ch * ch_mult[i]
                if i in attn_levels:
                    attns.append(MultiHeadAttnBlock(block_in, head_size))
            levels.insert(0, _level(blocks, attns, **({"upsample": Upsample(block_in)} if i else {})))
        self.up = nn.ModuleList(levels)  # up[0] is the full-resolution level, run last
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z: torch.Tensor, skips: dict[str | int, torch.Tensor]) -> torch.Tensor:
        h = self.conv_in(z)
        if self.mid is not None:
            h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h), skips["mid"]))
        lowest = len(self.up) - 1
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn):
                    # the lowest level reads the middle's first block (checked in RestoreFormer),
                    # RestoreFormer++'s extra levels the encoder's output at the same level
                    h = level.attn[j](h, skips["block_1"] if i == lowest else skips[i])
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))


class RestoreFormer(nn.Module):
    """Face restoration: (B, 3, 512, 512) in [-1, 1] -> ``(image, None)`` as the official
    forward returns (the second slot is unused). Constructor arguments are the official ones.

    ``resolution`` only decides, with ``attn_resolutions``, which levels get attention.
    ``fix_*`` freeze parts for training (requires_grad only). ``ex_multi_scale_num`` (RestoreFormer++,
    0 here) adds decoder attention at a larger scale, cross-attending to the encoder's output there.
    """

    channels_last = False  # NHWC activations on CPU: faster, not bit-exact (archs.ops.use_channels_last)

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
        head_size: int = 8,
        ex_multi_scale_num: int = 0,
    ) -> None:
        super().__init__()
        num_levels = len(ch_mult)
        attn_levels = {i for i in range(num_levels) if resolution // 2**i in attn_resolutions}
        if attn_levels - {num_levels - 1} or (attn_levels and not enable_mid):
            raise ValueError(
                "RestoreFormer supports attention only at the lowest resolution "
                f"({resolution // 2 ** (num_levels - 1)}) and with enable_mid=True, as the official forward")
        if double_z:
            raise ValueError("double_z=True cannot run: quant_conv expects z_channels inputs")
        decoder_resolutions = list(attn_resolutions)
        for _ in range(ex_multi_scale_num):
            # as the official loop: each pass replaces the extra scale by twice the last one, so
            # 1 gives [16, 32] and 2 gives [16, 64] (not [16, 32, 64])
            decoder_resolutions = [decoder_resolutions[0], decoder_resolutions[-1] * 2]
        decoder_levels = {i for i in range(num_levels) if resolution // 2**i in decoder_resolutions}
        if decoder_levels - attn_levels - set(range(num_levels - 1)):
            raise ValueError(f"decoder attention at {decoder_resolutions} needs the lowest level's middle section")
        self.encoder = MultiHeadEncoder(ch, ch_mult, num_res_blocks, attn_levels, dropout, in_channels,
                                        z_channels, enable_mid, head_size,
                                        kept_levels=frozenset(decoder_levels - {num_levels - 1}))
        self.decoder = MultiHeadDecoderTransformer(ch, out_ch, ch_mult, num_res_blocks, decoder_levels,
                                                   dropout, z_channels, enable_mid, head_size)
        self.quantize = VectorQuantizer(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

        frozen = [self.encoder] if fix_encoder else []
        if fix_decoder:
            frozen += [self.decoder, self.post_quant_conv, self.quantize]
        elif fix_codebook:
            frozen.append(self.quantize)
        for module in frozen:
            module.requires_grad_(False)

    def forward(self, x: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        # **kwargs: GFPGANer passes GFPGAN's options (return_rgb, weight) to every model; ignored.
        h, skips = self.encoder(fast_layout(x, self.channels_last))  # (B, z, R/32, R/32) for six levels
        quant, _, _ = self.quantize(self.quant_conv(h))
        return self.decoder(self.post_quant_conv(quant), skips).contiguous(), None  # NCHW, as the official code
