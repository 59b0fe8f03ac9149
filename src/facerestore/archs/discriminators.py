"""The two discriminators of GFPGAN training, plus the StyleGAN2 discriminator blocks.

``ConvLayer`` and ``ResBlock`` are also the encoder blocks of GFPGANv1 / GFPGANBilinear.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .ops import FusedLeakyReLU
from .stylegan2 import EqualConv2d, EqualLinear, ScaledLeakyReLU, blur_for_downsample, stylegan_channels


class ConvLayer(nn.Sequential):
    """[2x downsample] -> EqualConv2d -> [FusedLeakyReLU, or ScaledLeakyReLU when bias=False].

    Downsampling is a FIR blur + stride-2 conv (``resample_kernel`` taps, original StyleGAN2) or,
    with ``resample_kernel=None``, bilinear interpolation + stride-1 conv (GFPGANBilinear). The
    conv carries the bias only when there is no activation (else the activation holds it).
    Entries: ``[0|1].weight`` (conv, index 1 after a downsampler), ``[1|2].bias``; with
    ``stored_blur`` (GPEN) also the blur's ``0.kernel``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 resample_kernel: Sequence[float] | None = (1, 3, 3, 1), bias: bool = True, activate: bool = True,
                 stored_blur: bool = False):
        layers: list[nn.Module] = []
        stride, padding = 1, kernel_size // 2
        if downsample and resample_kernel is not None:
            layers.append(blur_for_downsample(resample_kernel, kernel_size, stored_blur))
            stride, padding = 2, 0
        elif downsample:
            layers.append(nn.Upsample(scale_factor=0.5, mode="bilinear", align_corners=False))
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            # in place on the fresh conv output
            layers.append(FusedLeakyReLU(out_channels, inplace=True) if bias else ScaledLeakyReLU(0.2, inplace=True))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual 2x downsampling block: (conv3x3 -> down-conv3x3  +  down-conv1x1 skip) / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, resample_kernel: Sequence[float] | None = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, resample_kernel=resample_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, resample_kernel=resample_kernel,
                              bias=False, activate=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x).add_(self.conv2(self.conv1(x))).div_(math.sqrt(2))  # in place on the fresh skip


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (basicsr): (B, 3, out_size, out_size) -> (B, 1) logits.

    The batch is split into groups of ``stddev_group`` samples (B must be divisible by it when
    larger); the std over each group is appended as one extra feature map before the last conv.
    """

    def __init__(self, out_size: int, channel_multiplier: float = 2, resample_kernel: Sequence[float] = (1, 3, 3, 1),
                 stddev_group: int = 4, narrow: float = 1):
        super().__init__()
        channels = stylegan_channels(channel_multiplier, narrow)
        log_size = int(math.log(out_size, 2))
        conv_body: list[nn.Module] = [ConvLayer(3, channels[out_size], 1)]
        in_channels = channels[out_size]
        for i in range(log_size, 2, -1):
            conv_body.append(ResBlock(in_channels, channels[2 ** (i - 1)], resample_kernel))
            in_channels = channels[2 ** (i - 1)]
        self.conv_body = nn.Sequential(*conv_body)
        self.final_conv = ConvLayer(in_channels + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )
        self.stddev_group = stddev_group
        self.stddev_feat = 1

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_body(x)  # (B, C, 4, 4)
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        # (G, B/G, F, C/F, H, W): sample j of every group shares statistics with the other j's
        stddev = out.view(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)  # (B/G, F, 1, 1)
        out = torch.cat([out, stddev.repeat(group, 1, h, w)], 1)
        out = self.final_conv(out)
        return self.final_linear(out.view(b, -1))


class FacialComponentDiscriminator(nn.Module):
    """VGG-style patch discriminator for eye / mouth crops: (B, 3, H, W) -> (B, 1, H/4, W/4).

    ``forward(x, return_feats=True)`` also returns the features after conv3 and conv5 (for the
    feature-style loss); otherwise the second output is None.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = ConvLayer(3, 64, 3)
        self.conv2 = ConvLayer(64, 128, 3, downsample=True)
        self.conv3 = ConvLayer(128, 128, 3)
        self.conv4 = ConvLayer(128, 256, 3, downsample=True)
        self.conv5 = ConvLayer(256, 256, 3)
        self.final_conv = ConvLayer(256, 1, 3, activate=False)

    def forward(self, x: Tensor, return_feats: bool = False, **kwargs) -> tuple[Tensor, list[Tensor] | None]:
        feat_mid = self.conv3(self.conv2(self.conv1(x)))
        feat_last = self.conv5(self.conv4(feat_mid))
        out = self.final_conv(feat_last)
        return out, ([feat_mid, feat_last] if return_feats else None)
