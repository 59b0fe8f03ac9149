"""CodeFormer (Zhou et al., NeurIPS 2022): codebook lookup by a transformer, with a fidelity weight.

The official ``CodeFormer`` (sczhou/CodeFormer ``basicsr/archs/codeformer_arch.py``, on the VQGAN
of ``vqgan_arch.py``), with its parameter names: ``encoder.blocks.{i}``, ``quantize.embedding``,
``generator.blocks.{i}``, ``position_emb``, ``feat_emb``, ``ft_layers.{i}``, ``idx_pred_layer``,
``fuse_convs_dict.{size}``.

The encoder maps the degraded face (B, 3, 512, 512) in [-1, 1] to a 16x16 grid of 256-d features;
a transformer predicts a codebook index per cell; the codebook entries, optionally renormalised
to the encoder features' statistics (``adain``), go through the VQGAN generator. On the way up,
the controllable feature transforms (``fuse_convs_dict``) mix in the encoder features of the same
size with weight ``w``: ``w = 0`` skips them (the codebook's face: quality), ``w = 1`` is the most
faithful to the input. The official inference script calls ``net(x, w=w, adain=True)[0]``.

Like the official class, the VQGAN part is fixed (64 base channels, six levels, 512 px, attention
at 16x16); the transformer's width, depth, heads, the codebook size and the fused scales are
constructor arguments.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The official VQGAN that CodeFormer builds on (VQAutoEncoder(512, 64, [1, 2, 2, 4, 4, 8], 'nearest',
# 2, [16], codebook_size)), and its 256-d codes on a 16x16 grid.
IMG_SIZE, NF, CH_MULT, RES_BLOCKS, ATTN_RESOLUTIONS, EMB_DIM = 512, 64, (1, 2, 2, 4, 4, 8), 2, (16,), 256
# Channels at each feature size, and after which block the encoder's features are taken / the
# generator's are fused (indices into encoder.blocks / generator.blocks; the official constants).
CHANNELS = {"16": 512, "32": 256, "64": 256, "128": 128, "256": 128, "512": 64}
FUSE_ENCODER_BLOCK = {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
FUSE_GENERATOR_BLOCK = {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """GroupNorm -> swish -> conv, twice, plus the input (1x1-projected by ``conv_out`` when the
    channels change)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.conv_out = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h.add_(x if self.conv_out is None else self.conv_out(x))  # fresh conv output: in place


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions (1x1-conv projections) plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x_n = self.norm(x)

        def tokens(t: Tensor) -> Tensor:  # (B, C, H, W) -> (B, H*W, C)
            return t.reshape(b, c, h * w).transpose(1, 2)

        out = F.scaled_dot_product_attention(tokens(self.q(x_n)), tokens(self.k(x_n)), tokens(self.v(x_n)))
        return self.proj_out(out.transpose(1, 2).reshape(b, c, h, w)).add_(x)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one pixel on the right and bottom only."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Blocks(nn.Module):
    """The official encoder / generator container: its layers, run in turn, as ``blocks.{i}``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


def build_encoder() -> Blocks:
    """``encoder.blocks``: conv, per level residual blocks (+ attention at 16) and a downsample,
    then residual / attention / residual, GroupNorm and a conv to the 256-d codes (no swish)."""
    blocks: list[nn.Module] = [nn.Conv2d(3, NF, 3, 1, 1)]
    res, ch = IMG_SIZE, NF
    for i, mult in enumerate(CH_MULT):
        for _ in range(RES_BLOCKS):
            blocks.append(ResBlock(ch, NF * mult))
            ch = NF * mult
            if res in ATTN_RESOLUTIONS:
                blocks.append(AttnBlock(ch))
        if i != len(CH_MULT) - 1:
            blocks.append(Downsample(ch))
            res //= 2
    blocks += [ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch), group_norm(ch), nn.Conv2d(ch, EMB_DIM, 3, 1, 1)]
    return Blocks(blocks)


def build_generator() -> Blocks:
    """``generator.blocks``: the encoder's mirror, ending in GroupNorm and a conv to RGB (no swish)."""
    ch = NF * CH_MULT[-1]
    res = IMG_SIZE // 2 ** (len(CH_MULT) - 1)
    blocks: list[nn.Module] = [nn.Conv2d(EMB_DIM, ch, 3, 1, 1), ResBlock(ch, ch), AttnBlock(ch), ResBlock(ch, ch)]
    for i in reversed(range(len(CH_MULT))):
        for _ in range(RES_BLOCKS):
            blocks.append(ResBlock(ch, NF * CH_MULT[i]))
            ch = NF * CH_MULT[i]
            if res in ATTN_RESOLUTIONS:
                blocks.append(AttnBlock(ch))
        if i != 0:
            blocks.append(Upsample(ch))
            res *= 2
    blocks += [group_norm(ch), nn.Conv2d(ch, 3, 3, 1, 1)]
    return Blocks(blocks)


class Codebook(nn.Module):
    """The VQGAN codebook (``quantize.embedding``); CodeFormer only looks entries up."""

    def __init__(self, codebook_size: int, emb_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, emb_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)


class TransformerSALayer(nn.Module):
    """Pre-norm transformer layer: self-attention (positions added to queries and keys), GELU MLP."""

    def __init__(self, embed_dim: int, nhead: int = 8, dim_mlp: int = 2048) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim, nhead, dropout=0.0)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:
        """tgt, query_pos: (L, B, C) sequence-first, as nn.MultiheadAttention's default."""
        normed = self.norm1(tgt)
        qk = normed + query_pos
        # need_weights as the official call (default True): it selects the explicit-softmax path,
        # and the codes are picked by argmax downstream, so the sums should round the same way
        tgt = tgt + self.self_attn(qk, qk, value=normed)[0]
        return tgt + self.linear2(F.gelu(self.linear1(self.norm2(tgt))))


class FuseSFTBlock(nn.Module):
    """Controllable feature transform: ``dec + w * (dec * scale + shift)``, scale and shift
    computed from the encoder and decoder features together (official ``Fuse_sft_block``)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.encode_enc = ResBlock(2 * in_ch, out_ch)
        self.scale = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.shift = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2, True),
                                   nn.Conv2d(out_ch, out_ch, 3, padding=1))

    def forward(self, enc_feat: Tensor, dec_feat: Tensor, w: float = 1) -> Tensor:
        enc_feat = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        residual = w * (dec_feat * self.scale(enc_feat) + self.shift(enc_feat))
        return dec_feat + residual


def adaptive_instance_normalization(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """``content`` renormalised per channel to ``style``'s mean and (unbiased) std, as the official
    ``adaptive_instance_normalization``: the codebook's face takes the input's colour and light."""
    def mean_std(feat: Tensor) -> tuple[Tensor, Tensor]:
        b, c = feat.shape[:2]
        flat = feat.reshape(b, c, -1)
        return flat.mean(dim=2).view(b, c, 1, 1), (flat.var(dim=2) + eps).sqrt().view(b, c, 1, 1)

    style_mean, style_std = mean_std(style)
    content_mean, content_std = mean_std(content)
    return (content - content_mean) / content_std * style_std + style_mean


class CodeFormer(nn.Module):
    """(B, 3, 512, 512) in [-1, 1] -> ``(image, logits, lq_feat)`` as the official forward.

    ``w`` in the forward is the fidelity weight (0 = quality, 1 = fidelity); ``adain=True`` is what
    the official inference passes. ``fix_modules`` freezes parts for training (requires_grad only).
    """

    channels_last = False  # kept for archs.ops.use_channels_last; CodeFormer does not switch layouts

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 latent_size: int = 256, connect_list: Sequence[str] = ("32", "64", "128", "256"),
                 fix_modules: Sequence[str] | None = ("quantize", "generator")) -> None:
        super().__init__()
        unknown = [s for s in connect_list if str(s) not in CHANNELS]
        if unknown:
            raise ValueError(f"connect_list sizes must be among {list(CHANNELS)}, got {unknown}")
        self.connect_list = [str(s) for s in connect_list]
        self.encoder = build_encoder()
        self.quantize = Codebook(codebook_size, EMB_DIM)
        self.generator = build_generator()
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(EMB_DIM, dim_embd)
        self.ft_layers = nn.Sequential(*(TransformerSALayer(dim_embd, n_head, dim_embd * 2) for _ in range(n_layers)))
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict({s: FuseSFTBlock(CHANNELS[s], CHANNELS[s]) for s in self.connect_list})
        for name in fix_modules or ():
            getattr(self, name).requires_grad_(False)

    def forward(self, x: Tensor, w: float = 0, detach_16: bool = True, code_only: bool = False,
                adain: bool = False, **kwargs: object) -> tuple[Tensor, Tensor, Tensor]:
        # **kwargs: callers written for GFPGAN pass its options (return_rgb); ignored.
        keep = {FUSE_ENCODER_BLOCK[s] for s in self.connect_list}
        enc_feats: dict[str, Tensor] = {}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in keep:
                enc_feats[str(x.shape[-1])] = x.clone()  # later blocks write in place
        lq_feat = x  # (B, 256, 16, 16)
        b = x.shape[0]

        pos_emb = self.position_emb.unsqueeze(1).repeat(1, b, 1)  # (HW, B, C)
        query = self.feat_emb(lq_feat.flatten(2).permute(2, 0, 1))  # (HW, B, C)
        for layer in self.ft_layers:
            query = layer(query, query_pos=pos_emb)
        logits = self.idx_pred_layer(query).permute(1, 0, 2)  # (B, HW, codebook_size)
        if code_only:
            return logits, lq_feat  # type: ignore[return-value]  # training stage II, as the official

        # the official takes the top-1 of the softmax, not of the logits: the same up to ties
        # that the softmax's rounding can create, so do the same
        top_idx = torch.topk(F.softmax(logits, dim=2), 1, dim=2)[1]  # (B, HW, 1)
        quant_feat = self.quantize.embedding(top_idx.view(b, -1))  # (B, HW, 256)
        quant_feat = quant_feat.view(b, *lq_feat.shape[2:], -1).permute(0, 3, 1, 2).contiguous()
        if detach_16:
            quant_feat = quant_feat.detach()
        if adain:
            quant_feat = adaptive_instance_normalization(quant_feat, lq_feat)

        fuse_at = {FUSE_GENERATOR_BLOCK[s] for s in self.connect_list}
        x = quant_feat
        for i, block in enumerate(self.generator.blocks):
            x = block(x)
            if i in fuse_at and w > 0:  # w == 0 skips the fusion entirely, as the official
                size = str(x.shape[-1])
                x = self.fuse_convs_dict[size](enc_feats[size].detach(), x, w)
        return x, logits, lq_feat
