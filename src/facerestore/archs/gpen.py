"""GPEN (Yang et al., CVPR 2021): a StyleGAN2 decoder driven by a plain convolutional encoder.

The official ``FullGenerator`` (yangxy/GPEN ``face_model/gpen_model.py``), with its parameter
names. It is built from the StyleGAN2 pieces GFPGANv1 uses (``archs/stylegan2.py``: equalized
layers, ``ModulatedConv2d``, FIR resampling, ``FusedLeakyReLU``), with two differences:

* the "noise" of every style conv is the encoder feature map at that resolution, and it is
  concatenated to the conv output (times the learned scalar ``noise.weight``) instead of added,
  so each conv's output has twice its channels and the next conv reads twice as many. The noise
  comes from the input, so the forward is deterministic;
* GPEN's checkpoints store the FIR kernels (``*.blur.kernel``, ``*.upsample.kernel``,
  ``ecd{i}.0.0.kernel``), and the stored ones are used.

Input (B, 3, size, size) in [-1, 1]; the encoder downsamples to 4x4 (``ecd0`` ... ``ecd{log2(size)-2}``),
``final_linear`` maps that to one style code, which goes through the mapping MLP
(``generator.style``) and drives every layer of the decoder.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import torch
from torch import Tensor, nn

from .discriminators import ConvLayer
from .ops import FusedLeakyReLU
from .stylegan2 import EqualLinear, ModulatedConv2d, NormStyleCode, stylegan_channels, upsample_2x

BLUR_KERNEL = (1, 3, 3, 1)


class NoiseInjection(nn.Module):
    """Append ``weight * noise`` to the channels (GPEN's ``isconcat=True``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: Tensor, noise: Tensor) -> Tensor:
        return torch.cat((image, self.weight * noise), dim=1)


class StyledConv(nn.Module):
    """Modulated conv (C_in -> C_out), the encoder feature concatenated, then a leaky ReLU with
    a bias over all 2 * C_out channels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim,
                                    sample_mode="upsample" if upsample else None,
                                    resample_kernel=tuple(blur_kernel), stored_blur=True)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels * 2, inplace=True)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, plus the FIR-upsampled previous RGB."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        if upsample:
            self.upsample = upsample_2x(tuple(blur_kernel), persistent=True)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style).add_(self.bias)  # fresh conv output: in place
        if skip is not None:
            out.add_(self.upsample(skip))
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class Generator(nn.Module):
    """GPEN's StyleGAN2 decoder: one style code, the encoder features as concatenated noise."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, lr_mlp: float = 0.01, narrow: float = 1) -> None:
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(NormStyleCode(), *(
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)))
        self.channels = channels = stylegan_channels(channel_multiplier, narrow)
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(channels[4] * 2, style_dim, upsample=False, blur_kernel=blur_kernel)
        self.log_size = int(math.log2(size))
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2**i]
            self.convs.append(StyledConv(in_channels * 2, out_channels, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channels * 2, out_channels, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channels * 2, style_dim, blur_kernel=blur_kernel))
            in_channels = out_channels
        self.n_latent = self.log_size * 2 - 2

    def forward(self, style: Tensor, noise: Sequence[Tensor]) -> Tensor:
        """style: (B, style_dim) code before the mapping MLP; noise: one map per style conv,
        4x4 first. Returns the image."""
        w = self.style(style)  # the same w for every layer (no mixing, no truncation at inference)
        out = self.conv1(self.input(w.shape[0]), w, noise[0])
        skip = self.to_rgb1(out, w)
        for level, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * level](out, w, noise[2 * level + 1])
            out = self.convs[2 * level + 1](out, w, noise[2 * level + 2])
            skip = to_rgb(out, w, skip)
        return skip


class FullGenerator(nn.Module):
    """GPEN-BFR: (B, 3, size, size) in [-1, 1] -> ``(image, None)`` as the official forward.

    Constructor arguments are the official ones (``device`` and ``isconcat`` are not: the ops
    run on any device, and every released model concatenates). Released: GPEN-BFR-512
    (``channel_multiplier=2, narrow=1``), GPEN-BFR-256 (``1, 0.5``), GPEN-BFR-1024/2048.
    """

    channels_last = False  # kept for archs.ops.use_channels_last; GPEN does not switch layouts

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: float = 2,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, lr_mlp: float = 0.01, narrow: float = 1) -> None:
        super().__init__()
        if size not in stylegan_channels() or size < 8:
            raise ValueError(f"GPEN size must be a power of two from 8 to 2048, got {size}")
        self.size = size
        channels = stylegan_channels(channel_multiplier, narrow)
        self.log_size = int(math.log2(size))
        self.generator = Generator(size, style_dim, n_mlp, channel_multiplier=channel_multiplier,
                                   blur_kernel=blur_kernel, lr_mlp=lr_mlp, narrow=narrow)
        self.ecd0 = nn.Sequential(ConvLayer(3, channels[size], 1))
        in_channels = channels[size]
        self.names = [f"ecd{i}" for i in range(self.log_size - 1)]
        for i in range(self.log_size, 2, -1):
            out_channels = channels[2 ** (i - 1)]
            layer = ConvLayer(in_channels, out_channels, 3, downsample=True, resample_kernel=tuple(blur_kernel),
                              stored_blur=True)
            setattr(self, self.names[self.log_size - i + 1], nn.Sequential(layer))
            in_channels = out_channels
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 4 * 4, style_dim, activation="fused_lrelu"))

    def forward(self, x: Tensor, **kwargs: object) -> tuple[Tensor, None]:
        # **kwargs: callers written for GFPGAN pass its options (return_rgb, weight); ignored.
        features = []
        for name in self.names:
            x = getattr(self, name)(x)
            features.append(x)  # size, size/2, ..., 4
        style = self.final_linear(x.reshape(x.shape[0], -1))
        # The decoder's convs run at 4 (once), then 8, 8, 16, 16, ..., size, size.
        noise = list(itertools.chain.from_iterable((f, f) for f in reversed(features)))[1:]
        return self.generator(style, noise), None
