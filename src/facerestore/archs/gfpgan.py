"""GFPGAN (Wang et al. 2021): a U-Net whose features steer a pretrained StyleGAN2 decoder.

    x (B, 3, S, S) -> encoder (S -> 4, skips kept) -> final_linear -> style code w
                   -> decoder blocks (4 -> S, adding the skips) -> SFT scale/shift per resolution
    StyleGAN2(w, SFT conditions) -> image (B, 3, S, S); toRGB of each decoder block -> out_rgbs

Three official variants with identical forward passes and different layers:

* ``GFPGANv1`` -- the paper model (v1 weights): equalized layers, FIR (upfirdn2d) downsampling,
  ``StyleGAN2Generator`` decoder.
* ``GFPGANBilinear`` -- the same names and shapes, bilinear resampling everywhere
  (``StyleGAN2GeneratorBilinear``); the v1.2 model was trained like this, then converted.
* ``GFPGANv1Clean`` -- v1.2 / v1.3 / v1.4: plain ``nn.Conv2d`` / ``nn.Linear`` layers with the
  equalization scales folded into the weights (``StyleGAN2GeneratorClean``).

Constructors take the official keyword arguments. They never read files: ``decoder_load_path``
is accepted for compatibility and ignored (load decoder weights yourself, e.g.
``model.stylegan_decoder.load_state_dict(sd)``).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .discriminators import ConvLayer, ResBlock
from .ops import FusedLeakyReLU, add_into, fast_layout
from .stylegan2 import (
    EqualConv2d,
    EqualLinear,
    ScaledLeakyReLU,
    StyleGAN2Generator,
    StyleGAN2GeneratorBilinear,
    StyleGAN2GeneratorClean,
    stylegan_channels,
)


# ----------------------------------------------------------------------------- clean layers
class ConvLReLU(nn.Conv2d):
    """nn.Conv2d followed by leaky_relu(0.2); entries ``weight``, ``bias`` as a plain conv."""

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu_(super().forward(x), 0.2)  # in place on the fresh conv output


class CleanResBlock(nn.Module):
    """Residual block resampling 2x by bilinear interpolation ('down' or 'up'); plain convs."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "down"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.scale_factor = {"down": 0.5, "up": 2.0}[mode]

    def forward(self, x: Tensor) -> Tensor:
        # In place on fresh conv outputs. The sum goes into the skip conv's output: the in-place
        # leaky ReLU saved ``out`` for its backward.
        out = F.leaky_relu_(self.conv1(x), 0.2)
        out = F.interpolate(out, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        out = F.leaky_relu_(self.conv2(out), 0.2)
        x = F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)
        return self.skip(x).add_(out)


# ----------------------------------------------------------------------------- equalized layers
class ConvUpLayer(nn.Module):
    """Bilinear 2x upsampling -> equalized conv -> [FusedLeakyReLU | ScaledLeakyReLU]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, bias_init_val: float = 0, activate: bool = True):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        # with an activation, the bias lives in FusedLeakyReLU
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val))) if bias and not activate else None
        if activate:
            # in place on the fresh conv output
            self.activation = FusedLeakyReLU(out_channels, inplace=True) if bias else ScaledLeakyReLU(0.2, inplace=True)
        else:
            self.activation = None

    def forward(self, x: Tensor) -> Tensor:
        out = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        out = F.conv2d(out, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)
        return out if self.activation is None else self.activation(out)


class ResUpBlock(nn.Module):
    """Residual 2x upsampling block: (conv3x3 -> up-conv3x3  +  up-conv1x1 skip) / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvUpLayer(in_channels, out_channels, 3, padding=1)
        self.skip = ConvUpLayer(in_channels, out_channels, 1, bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x).add_(self.conv2(self.conv1(x))).div_(math.sqrt(2))  # in place on the fresh skip


# ----------------------------------------------------------------------------- layer kits
# The three variants differ only in which layers they are built from; a kit makes them.
class _CleanKit:
    """Layers of GFPGANv1Clean: plain convs and linears, leaky ReLU after."""

    def conv_act(self, cin: int, cout: int, k: int) -> nn.Module:
        return ConvLReLU(cin, cout, k, 1, k // 2)

    def down_block(self, cin: int, cout: int) -> nn.Module:
        return CleanResBlock(cin, cout, "down")

    def up_block(self, cin: int, cout: int) -> nn.Module:
        return CleanResBlock(cin, cout, "up")

    def to_rgb(self, c: int) -> nn.Module:
        return nn.Conv2d(c, 3, 1)

    def linear(self, cin: int, cout: int) -> nn.Module:
        return nn.Linear(cin, cout)

    def sft_branch(self, c: int, c_out: int, bias_init: float) -> nn.Module:  # default init, as official
        return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(c, c_out, 3, 1, 1))


class _EqualizedKit:
    """Layers of GFPGANv1 (FIR ``resample_kernel``) and GFPGANBilinear (``resample_kernel=None``)."""

    def __init__(self, resample_kernel: Sequence[float] | None):
        self.resample_kernel = resample_kernel

    def conv_act(self, cin: int, cout: int, k: int) -> nn.Module:
        return ConvLayer(cin, cout, k)

    def down_block(self, cin: int, cout: int) -> nn.Module:
        return ResBlock(cin, cout, self.resample_kernel)

    def up_block(self, cin: int, cout: int) -> nn.Module:
        return ResUpBlock(cin, cout)

    def to_rgb(self, c: int) -> nn.Module:
        return EqualConv2d(c, 3, 1)

    def linear(self, cin: int, cout: int) -> nn.Module:
        return EqualLinear(cin, cout)

    def sft_branch(self, c: int, c_out: int, bias_init: float) -> nn.Module:
        return nn.Sequential(EqualConv2d(c, c, 3, padding=1), ScaledLeakyReLU(0.2, inplace=True),
                             EqualConv2d(c, c_out, 3, padding=1, bias_init_val=bias_init))


# ----------------------------------------------------------------------------- the network
class _GFPGAN(nn.Module):
    """U-Net encoder/decoder + style code + SFT-conditioned StyleGAN2; the forward of all variants."""

    channels_last = False  # NHWC activations on CPU: faster, not bit-exact (archs.ops.use_channels_last)

    # Keyword-only, as _StyleGAN2Base: several float and bool arguments in a row.
    def __init__(self, *, kit: _CleanKit | _EqualizedKit, decoder: nn.Module, out_size: int, num_style_feat: int,
                 channel_multiplier: float, decoder_load_path: str | None, fix_decoder: bool,
                 input_is_latent: bool, different_w: bool, narrow: float, sft_half: bool):
        super().__init__()
        self.input_is_latent = input_is_latent
        self.different_w = different_w
        self.num_style_feat = num_style_feat
        self.log_size = int(math.log(out_size, 2))
        ch = stylegan_channels(channel_multiplier, narrow * 0.5)  # the U-Net is half as wide as the decoder
        levels = [2**i for i in range(3, self.log_size + 1)]  # 8, 16, ..., out_size

        self.conv_body_first = kit.conv_act(3, ch[out_size], 1)
        self.conv_body_down = nn.ModuleList(kit.down_block(ch[r], ch[r // 2]) for r in reversed(levels))
        self.final_conv = kit.conv_act(ch[4], ch[4], 3)
        self.conv_body_up = nn.ModuleList(kit.up_block(ch[r // 2], ch[r]) for r in levels)
        self.toRGB = nn.ModuleList(kit.to_rgb(ch[r]) for r in levels)
        num_w = (self.log_size * 2 - 2) if different_w else 1  # one w per decoder layer, or a shared one
        self.final_linear = kit.linear(ch[4] * 4 * 4, num_w * num_style_feat)
        self.stylegan_decoder = decoder
        if decoder_load_path:
            warnings.warn("decoder_load_path is ignored: facerestore builds models without reading files; "
                          "load the decoder with model.stylegan_decoder.load_state_dict(...)", stacklevel=3)
        if fix_decoder:
            self.stylegan_decoder.requires_grad_(False)
        # SFT branches; with sft_half they modulate only half of the decoder's channels
        sft_channels = {r: ch[r] if sft_half else ch[r] * 2 for r in levels}
        self.condition_scale = nn.ModuleList(kit.sft_branch(ch[r], sft_channels[r], 1.0) for r in levels)
        self.condition_shift = nn.ModuleList(kit.sft_branch(ch[r], sft_channels[r], 0.0) for r in levels)

    def forward(self, x: Tensor, return_latents: bool = False, return_rgb: bool = True, randomize_noise: bool = True,
                **kwargs) -> tuple[Tensor, list[Tensor]]:
        """Restore faces x (B, 3, S, S) in [-1, 1].

        Returns ``(image, out_rgbs)``: the restored (B, 3, S, S) image (not clamped) and, when
        ``return_rgb``, the U-Net's RGB predictions at 8, 16, ..., S (used by the training's
        pyramid loss). As in the official code, ``return_latents`` is passed to the decoder but the
        latents are not returned. ``randomize_noise=True`` draws fresh decoder noise from the
        global RNG (``torch.manual_seed`` reproduces it); False uses the stored ``noises`` buffers.
        Extra keyword arguments (e.g. GFPGANer's ``weight``) are ignored, as in the official code.
        """
        b = x.shape[0]
        feat = self.conv_body_first(fast_layout(x, self.channels_last))
        unet_skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            unet_skips.insert(0, feat)  # deepest first
        feat = self.final_conv(feat)  # (B, C4, 4, 4)

        style_code = self.final_linear(feat.reshape(b, -1))
        if self.different_w:
            style_code = style_code.view(b, -1, self.num_style_feat)  # (B, num_latent, num_style_feat)

        conditions, out_rgbs = [], []
        for i, block in enumerate(self.conv_body_up):
            feat = block(add_into(feat, unet_skips[i]))  # feat is read by nothing else now
            conditions += [self.condition_scale[i](feat), self.condition_shift[i](feat)]
            if return_rgb:
                out_rgbs.append(self.toRGB[i](feat))

        image, _ = self.stylegan_decoder([style_code], conditions=conditions, return_latents=return_latents,
                                         input_is_latent=self.input_is_latent, randomize_noise=randomize_noise)
        return image, [rgb.contiguous() for rgb in out_rgbs]  # NCHW, as the official code


class GFPGANv1Clean(_GFPGAN):
    """GFPGAN v1.2 / v1.3 / v1.4 (released with channel_multiplier=2, input_is_latent=True,
    different_w=True, sft_half=True)."""

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: str | None = None, fix_decoder: bool = True, num_mlp: int = 8,
                 input_is_latent: bool = False, different_w: bool = False, narrow: float = 1, sft_half: bool = False):
        decoder = StyleGAN2GeneratorClean(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                                          channel_multiplier=channel_multiplier, narrow=narrow, sft_half=sft_half)
        super().__init__(kit=_CleanKit(), decoder=decoder, out_size=out_size, num_style_feat=num_style_feat,
                         channel_multiplier=channel_multiplier, decoder_load_path=decoder_load_path,
                         fix_decoder=fix_decoder, input_is_latent=input_is_latent, different_w=different_w,
                         narrow=narrow, sft_half=sft_half)


class GFPGANv1(_GFPGAN):
    """The paper's GFPGAN (v1 weights: channel_multiplier=1, input_is_latent=True, different_w=True,
    sft_half=True)."""

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 resample_kernel: Sequence[float] = (1, 3, 3, 1), decoder_load_path: str | None = None,
                 fix_decoder: bool = True, num_mlp: int = 8, lr_mlp: float = 0.01, input_is_latent: bool = False,
                 different_w: bool = False, narrow: float = 1, sft_half: bool = False):
        decoder = StyleGAN2Generator(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                                     channel_multiplier=channel_multiplier, resample_kernel=resample_kernel,
                                     lr_mlp=lr_mlp, narrow=narrow, sft_half=sft_half)
        super().__init__(kit=_EqualizedKit(tuple(resample_kernel)), decoder=decoder, out_size=out_size,
                         num_style_feat=num_style_feat, channel_multiplier=channel_multiplier,
                         decoder_load_path=decoder_load_path, fix_decoder=fix_decoder,
                         input_is_latent=input_is_latent, different_w=different_w, narrow=narrow, sft_half=sft_half)


class GFPGANBilinear(_GFPGAN):
    """GFPGANv1 with bilinear resampling; convert to GFPGANv1Clean with ``convert.bilinear_to_clean``."""

    def __init__(self, out_size: int, num_style_feat: int = 512, channel_multiplier: float = 1,
                 decoder_load_path: str | None = None, fix_decoder: bool = True, num_mlp: int = 8,
                 lr_mlp: float = 0.01, input_is_latent: bool = False, different_w: bool = False, narrow: float = 1,
                 sft_half: bool = False):
        decoder = StyleGAN2GeneratorBilinear(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                                             channel_multiplier=channel_multiplier, lr_mlp=lr_mlp, narrow=narrow,
                                             sft_half=sft_half)
        super().__init__(kit=_EqualizedKit(None), decoder=decoder, out_size=out_size, num_style_feat=num_style_feat,
                         channel_multiplier=channel_multiplier, decoder_load_path=decoder_load_path,
                         fix_decoder=fix_decoder, input_is_latent=input_is_latent, different_w=different_w,
                         narrow=narrow, sft_half=sft_half)
