"""One StyleGAN2 generator (Karras et al. 2020) covering the three official variants.

The official tree defines ModulatedConv2d / StyleConv / ToRGB four times. Here they are written
once; the variants differ in two switches, kept with the official parameter names:

* ``equalized`` -- weights are stored unit-variance and scaled at run time (``Equal*`` layers,
  ``FusedLeakyReLU`` named ``activate``), as in the original and bilinear generators. When
  False ("clean"), weights are stored already scaled, the StyleConv bias is a plain ``bias``
  and the style MLP is ``nn.Linear`` + ``nn.LeakyReLU``. Both compute the same function
  (``convert.bilinear_to_clean`` maps one onto the other).
* ``resample_kernel`` -- a FIR kernel: resolution changes with transposed conv + ``upfirdn2d``
  blur (original). ``None``: bilinear interpolation (bilinear and clean).

Public classes: ``StyleGAN2Generator`` (original, basicsr), ``StyleGAN2GeneratorBilinear`` and
``StyleGAN2GeneratorClean`` (GFPGAN). All three also take ``sft_half`` and accept SFT
``conditions`` in ``forward``, which is how GFPGAN modulates the decoder.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .ops import FusedLeakyReLU, fast_layout, fused_leaky_relu, mul_into, scale_shift_into, upfirdn2d, wide

# Channels per resolution at channel_multiplier=1, narrow=1.
BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16, 2048: 8}


def stylegan_channels(channel_multiplier: float = 2, narrow: float = 1) -> dict[int, int]:
    """Feature channels per resolution; the multiplier widens resolutions >= 64 only."""
    return {res: int(c * (channel_multiplier if res >= 64 else 1) * narrow) for res, c in BASE_CHANNELS.items()}


# ----------------------------------------------------------------------------- equalized layers
class EqualLinear(nn.Module):
    """Linear layer with run-time weight scaling 1/sqrt(in) * lr_mul (weights stored ~N(0, 1/lr_mul^2))."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, bias_init_val: float = 0,
                 lr_mul: float = 1, activation: str | None = None):
        super().__init__()
        if activation not in ("fused_lrelu", None):
            raise ValueError(f"EqualLinear activation must be 'fused_lrelu' or None, got {activation!r}")
        self.lr_mul = lr_mul
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val))) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation == "fused_lrelu":
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias, inplace=True)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Conv2d with run-time weight scaling 1/sqrt(fan_in)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, bias_init_val: float = 0):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.full((out_channels,), float(bias_init_val))) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ScaledLeakyReLU(nn.Module):
    """leaky_relu(x) * sqrt(2), the bias-free FusedLeakyReLU (``inplace`` as there)."""

    def __init__(self, negative_slope: float = 0.2, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, None, self.negative_slope, math.sqrt(2), self.inplace)


class UpFirDn(nn.Module):
    """``upfirdn2d`` with a fixed separable FIR kernel built from 1-D taps (normalised, times up^2).

    The kernel is a non-persistent buffer by default: it follows ``.to()`` but is not in the state
    dict, matching the basicsr / GFPGAN checkpoints, which do not store it. GPEN's checkpoints do
    store it (``persistent=True``), and then the stored kernel is the one used.
    """

    kernel: Tensor  # a registered buffer

    def __init__(self, taps: Sequence[float], up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
                 gain: float = 1, persistent: bool = False):
        super().__init__()
        k = torch.tensor(taps, dtype=torch.float32)
        k = k[:, None] * k[None, :]
        self.register_buffer("kernel", k / k.sum() * gain, persistent=persistent)
        self.up, self.down, self.pad = up, down, pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, self.up, self.down, self.pad)


def blur_for_upsample(taps: Sequence[float], conv_kernel_size: int, persistent: bool = False) -> UpFirDn:
    """The blur that follows a stride-2 transposed conv of size ``conv_kernel_size``."""
    p = len(taps) - 2 - (conv_kernel_size - 1)
    return UpFirDn(taps, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4, persistent=persistent)


def blur_for_downsample(taps: Sequence[float], conv_kernel_size: int, persistent: bool = False) -> UpFirDn:
    """The blur that precedes a stride-2 conv of size ``conv_kernel_size``."""
    p = len(taps) - 2 + (conv_kernel_size - 1)
    return UpFirDn(taps, pad=((p + 1) // 2, p // 2), persistent=persistent)


def upsample_2x(taps: Sequence[float] | None, interpolation_mode: str = "bilinear",
                persistent: bool = False) -> nn.Module:
    """2x upsampling of RGB skips: FIR (``taps``) or interpolation (``taps=None``)."""
    if taps is not None:
        p = len(taps) - 2
        return UpFirDn(taps, up=2, pad=((p + 1) // 2 + 1, p // 2), gain=4, persistent=persistent)
    return nn.Upsample(scale_factor=2, mode=interpolation_mode,
                       align_corners=None if interpolation_mode == "nearest" else False)


# ----------------------------------------------------------------------------- StyleGAN2 blocks
class NormStyleCode(nn.Module):
    """Pixel norm of the style codes z: (B, C) -> (B, C)."""

    def forward(self, x: Tensor) -> Tensor:
        # in fp32 whatever the dtype: x**2 overflows fp16 beyond |x| = 256 (GFPGAN issue #50)
        x32 = wide(x)
        return (x32 * torch.rsqrt(torch.mean(x32**2, dim=1, keepdim=True) + 1e-8)).to(x.dtype)


def _style_linear(num_style_feat: int, out_channels: int, equalized: bool) -> nn.Module:
    """The affine map from a style w to per-input-channel scales (bias initialised to 1)."""
    if equalized:
        return EqualLinear(num_style_feat, out_channels, bias_init_val=1)
    linear = nn.Linear(num_style_feat, out_channels)
    nn.init.kaiming_normal_(linear.weight, nonlinearity="linear")
    nn.init.ones_(linear.bias)
    return linear


class ModulatedConv2d(nn.Module):
    """Conv whose weights are scaled per sample by the style (and optionally demodulated); no bias.

    ``sample_mode``: None, 'upsample' or 'downsample' (2x). See the module docstring for
    ``equalized`` and ``resample_kernel``. ``stored_blur``: GPEN's layout, where the FIR blur is
    named ``blur`` and its kernel is in the state dict (basicsr: ``smooth``, not stored).
    """

    # The graph engines (facerestore.engines) trace the one-sample path with this switched on:
    # the demodulation comes from the stored weights' squared sums over the kernel (a constant the
    # exporter folds) and the style, instead of from a sum over the modulated weights, and style and
    # demodulation scale the weights in one product. The same function with fewer passes over the
    # weights (5 % of a GFPGANv1Clean forward on OpenVINO); it rounds differently (~1e-6), so the
    # PyTorch path keeps the official order and its official 8-bit pixels.
    fold_weight_norms = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: str | None = None, eps: float = 1e-8, *,
                 equalized: bool = True, resample_kernel: Sequence[float] | None = None,
                 interpolation_mode: str = "bilinear", stored_blur: bool = False):
        super().__init__()
        if sample_mode not in (None, "upsample", "downsample"):
            raise ValueError(f"sample_mode must be None, 'upsample' or 'downsample', got {sample_mode!r}")
        self.out_channels, self.kernel_size = out_channels, kernel_size
        self.demodulate, self.sample_mode, self.eps = demodulate, sample_mode, eps
        self.resample_kernel = resample_kernel
        self.interpolation_mode = interpolation_mode
        fan_in = in_channels * kernel_size**2
        self.weight_gain = 1 / math.sqrt(fan_in) if equalized else 1.0  # clean weights are stored pre-scaled
        self.modulation = _style_linear(num_style_feat, in_channels, equalized)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
                                   * (1.0 if equalized else 1 / math.sqrt(fan_in)))
        self._blur_name = "blur" if stored_blur else "smooth"
        if resample_kernel is not None and sample_mode == "upsample":
            self.add_module(self._blur_name, blur_for_upsample(resample_kernel, kernel_size, stored_blur))
        elif resample_kernel is not None and sample_mode == "downsample":
            self.add_module(self._blur_name, blur_for_downsample(resample_kernel, kernel_size, stored_blur))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """x: (B, Cin, H, W), style: (B, num_style_feat) -> (B, Cout, H', W').

        One sample, or a batch in train mode: the official arithmetic, per-sample weights
        modulated by the style (then demodulated) in one grouped conv, so training steps round as
        the official ones do. A batch in eval mode (inference): the style scales the activations
        instead, ``conv(x * s, w) * demod`` with ``demod = rsqrt(s**2 @ sum_k(w**2) +
        eps)``, the same function with one weight for the whole batch, so it runs as one ordinary
        conv. The demodulation sums run in fp32 whatever the dtype (fp16 overflows there).
        """
        b, c = x.shape[:2]
        s = self.modulation(style)  # (B, Cin)
        if b == 1 and self.fold_weight_norms and not self.training:
            return self._conv(x, self._folded_weight(s).to(x.dtype))
        if b == 1:
            weight = self._modulated_weight(s).to(x.dtype)
            return self._conv(x, weight)
        if self.training:
            weight = self._modulated_weight(s).to(x.dtype)  # (B * Cout, Cin, k, k)
            out = self._conv(x.reshape(1, b * c, *x.shape[2:]), weight, groups=b)
            return out.view(b, self.out_channels, *out.shape[2:])
        weight = self.weight[0] if self.weight_gain == 1.0 else self.weight_gain * self.weight[0]
        out = self._conv(x * s.view(b, c, 1, 1).to(x.dtype), weight)
        if self.demodulate:
            w2 = wide(weight).square().sum([2, 3])  # (Cout, Cin)
            scale = torch.rsqrt(wide(s).square() @ w2.t() + self.eps)  # (B, Cout)
            out = mul_into(out, scale.view(b, self.out_channels, 1, 1).to(out.dtype))
        return out

    def _modulated_weight(self, s: Tensor) -> Tensor:
        """The official per-sample weights, demodulated in fp32: (B * Cout, Cin, k, k)."""
        weight = wide(self.weight)  # (1, Cout, Cin, k, k)
        if self.weight_gain != 1.0:  # clean weights have gain 1.0, and 1.0 * w == w: skip that product
            weight = self.weight_gain * weight
        weight = weight * wide(s).view(s.shape[0], 1, -1, 1, 1)  # (B, Cout, Cin, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps).view(s.shape[0], -1, 1, 1, 1)
            # pow saved the modulated weights for its backward: in place only without autograd
            weight = mul_into(weight, demod)
        return weight.view(-1, *weight.shape[2:])

    def _folded_weight(self, s: Tensor) -> Tensor:
        """One sample's weights, ``w * s * demod`` with ``demod = rsqrt(s**2 @ sum_k(w**2) + eps)``
        (``fold_weight_norms``): (Cout, Cin, k, k), in fp32 whatever the dtype."""
        weight = wide(self.weight[0])  # (Cout, Cin, k, k)
        if self.weight_gain != 1.0:
            weight = self.weight_gain * weight
        s = wide(s).view(1, -1)  # (1, Cin)
        if not self.demodulate:
            return weight * s[:, :, None, None]
        demod = torch.rsqrt(s.square() @ weight.square().sum([2, 3]).t() + self.eps)  # (1, Cout)
        return weight * (demod.view(-1, 1) * s)[:, :, None, None]

    def _conv(self, x: Tensor, weight: Tensor, groups: int = 1) -> Tensor:
        """Resample (per ``sample_mode`` / ``resample_kernel``) and convolve with
        (groups * Cout, Cin, k, k): one group per sample when the weights are per sample."""
        k = self.kernel_size
        if self.resample_kernel is not None and self.sample_mode == "upsample":
            cout, cin = weight.shape[0] // groups, weight.shape[1]
            weight = weight.view(groups, cout, cin, k, k).transpose(1, 2).reshape(groups * cin, cout, k, k)
            blur = getattr(self, self._blur_name)
            return blur(F.conv_transpose2d(x, weight, stride=2, groups=groups))
        if self.resample_kernel is not None and self.sample_mode == "downsample":
            return F.conv2d(getattr(self, self._blur_name)(x), weight, stride=2, groups=groups)
        if self.sample_mode is not None:
            align = None if self.interpolation_mode == "nearest" else False
            x = F.interpolate(x, scale_factor=2 if self.sample_mode == "upsample" else 0.5,
                              mode=self.interpolation_mode, align_corners=align)
        return F.conv2d(x, weight, padding=k // 2, groups=groups)


class StyleConv(nn.Module):
    """Modulated conv + per-pixel noise (strength ``weight``) + bias + leaky ReLU.

    Equalized: the bias lives in ``activate`` (FusedLeakyReLU, which also scales by sqrt(2)).
    Clean: a plain ``bias`` (1, C, 1, 1), with the sqrt(2) folded in front of the noise.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, sample_mode: str | None = None, *, equalized: bool = True,
                 resample_kernel: Sequence[float] | None = None, interpolation_mode: str = "bilinear"):
        super().__init__()
        self.equalized = equalized
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, num_style_feat, demodulate, sample_mode, equalized=equalized,
            resample_kernel=resample_kernel, interpolation_mode=interpolation_mode)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        if equalized:
            self.activate = FusedLeakyReLU(out_channels, inplace=True)
        else:
            self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        # The conv output is fresh and its backward does not need it, so the steps below run in
        # place where autograd allows: a new full-size tensor per step costs more than its arithmetic.
        out = self.modulated_conv(x, style)
        if not self.equalized:
            # not folded into the weights: that is faster but moves the rounding, and the pipeline
            # promises the official 8-bit pixels (tests/test_official_fixtures.py)
            out.mul_(2**0.5)
        if noise is None:  # fresh noise from the global RNG, (B, 1, H, W)
            b, _, h, w = out.shape
            noise = torch.randn(b, 1, h, w, device=out.device, dtype=out.dtype)
        out.add_(self.weight * noise)
        if self.equalized:
            return self.activate(out)  # built with inplace=True
        return F.leaky_relu_(out.add_(self.bias), 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, added to the upsampled previous RGB."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True, *, equalized: bool = True,
                 resample_kernel: Sequence[float] | None = None, interpolation_mode: str = "bilinear"):
        super().__init__()
        self.upsample = upsample_2x(resample_kernel, interpolation_mode) if upsample else None
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False,
                                              equalized=equalized)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.modulated_conv(x, style).add_(self.bias)  # fresh conv output: in place
        if skip is not None:
            out.add_(self.upsample(skip) if self.upsample is not None else skip)
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 input, repeated over the batch."""

    def __init__(self, num_channel: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.weight.repeat(batch, 1, 1, 1)


# ----------------------------------------------------------------------------- generator
class _LayerSettings(TypedDict):
    """What every style conv and to-RGB layer of one generator shares."""

    equalized: bool
    resample_kernel: Sequence[float] | None
    interpolation_mode: str


class _StyleGAN2Base(nn.Module):
    """Mapping MLP + synthesis network; the public subclasses fix ``equalized``/``resample_kernel``."""

    channels_last = False  # NHWC activations on CPU: faster, not bit-exact (archs.ops.use_channels_last)

    # Keyword-only: narrow and lr_mlp are both floats, and the subclasses' official signatures
    # order them differently, so a positional swap would build a wrong network without an error.
    def __init__(self, *, out_size: int, num_style_feat: int, num_mlp: int, channel_multiplier: float,
                 narrow: float, lr_mlp: float, sft_half: bool, equalized: bool,
                 resample_kernel: Sequence[float] | None, interpolation_mode: str = "bilinear"):
        super().__init__()
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half
        self.style_mlp = self._make_style_mlp(num_style_feat, num_mlp, lr_mlp, equalized)
        self.channels = channels = stylegan_channels(channel_multiplier, narrow)
        layer = _LayerSettings(equalized=equalized, resample_kernel=resample_kernel,
                               interpolation_mode=interpolation_mode)

        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], 3, num_style_feat, **layer)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False, **layer)

        self.log_size = int(math.log(out_size, 2))
        self.num_layers = (self.log_size - 2) * 2 + 1  # style convs, one noise map each
        self.num_latent = self.log_size * 2 - 2  # w vectors consumed (convs + to_rgbs, shared pairwise)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()  # fixed noise maps, used with randomize_noise=False
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, res, res))
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2**i]
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, sample_mode="upsample",
                                              **layer))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat, **layer))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True, **layer))
            in_channels = out_channels

    @staticmethod
    def _make_style_mlp(num_style_feat: int, num_mlp: int, lr_mlp: float, equalized: bool) -> nn.Sequential:
        layers: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            if equalized:
                layers.append(EqualLinear(num_style_feat, num_style_feat, lr_mul=lr_mlp, activation="fused_lrelu"))
            else:
                linear = nn.Linear(num_style_feat, num_style_feat)
                nn.init.kaiming_normal_(linear.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(linear.bias)
                layers += [linear, nn.LeakyReLU(0.2)]
        return nn.Sequential(*layers)

    def make_noise(self) -> list[Tensor]:
        """Fresh noise maps, one per style conv."""
        device = self.constant_input.weight.device
        return [torch.randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=device)
                for i in range(self.num_layers)]

    def get_latent(self, x: Tensor) -> Tensor:
        return self.style_mlp(x)

    def mean_latent(self, num_latent: int) -> Tensor:
        z = torch.randn(num_latent, self.num_style_feat, device=self.constant_input.weight.device)
        return self.style_mlp(z).mean(0, keepdim=True)

    def _latent(self, styles: list[Tensor], inject_index: int | None) -> Tensor:
        """Styles -> per-layer latents (B, num_latent, num_style_feat); two styles are mixed."""
        if len(styles) == 1:
            s = styles[0]
            return s if s.ndim == 3 else s.unsqueeze(1).repeat(1, self.num_latent, 1)
        if inject_index is None:
            inject_index = random.randint(1, self.num_latent - 1)
        return torch.cat([styles[0].unsqueeze(1).repeat(1, inject_index, 1),
                          styles[1].unsqueeze(1).repeat(1, self.num_latent - inject_index, 1)], 1)

    def forward(self, styles: list[Tensor], input_is_latent: bool = False,
                noise: Sequence[Tensor | None] | None = None,
                randomize_noise: bool = True, truncation: float = 1, truncation_latent: Tensor | None = None,
                inject_index: int | None = None, return_latents: bool = False,
                conditions: list[Tensor] | None = None) -> tuple[Tensor, Tensor | None]:
        """Synthesise images (B, 3, out_size, out_size) from style codes.

        Args:
            styles: one or two (B, num_style_feat) codes (two are mixed at ``inject_index``), or one
                (B, num_latent, num_style_feat) tensor of per-layer latents.
            input_is_latent: the styles are already w (skip the mapping MLP).
            noise: per-layer noise maps; else fresh noise (``randomize_noise``) or the stored buffers.
            truncation, truncation_latent: move w towards ``truncation_latent`` when truncation < 1.
            conditions: GFPGAN's SFT [scale_8, shift_8, scale_16, shift_16, ...]; applied after the
                first (upsampling) conv of each resolution while they last.

        Returns:
            (image, latent if return_latents else None).
        """
        if not input_is_latent:
            styles = [self.style_mlp(s) for s in styles]
        if noise is None:
            noise = ([None] * self.num_layers if randomize_noise else
                     [getattr(self.noises, f"noise{i}") for i in range(self.num_layers)])
        if truncation < 1:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs a truncation_latent (e.g. mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]
        latent = self._latent(styles, inject_index)
        conditions = conditions or []

        out = fast_layout(self.constant_input(latent.shape[0]), self.channels_last)
        out = self.style_conv1(out, latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):  # resolution 2**(level + 3)
            i = 2 * level + 1  # index of this level's first conv (noise) and of its first w
            out = self.style_convs[i - 1](out, latent[:, i], noise=noise[i])
            if i < len(conditions):
                out = scale_shift_into(out, conditions[i - 1], conditions[i], self.sft_half)
            out = self.style_convs[i](out, latent[:, i + 1], noise=noise[i + 1])
            skip = to_rgb(out, latent[:, i + 2], skip)
        return skip.contiguous(), (latent if return_latents else None)  # NCHW out, as the official code


class StyleGAN2Generator(_StyleGAN2Base):
    """Original StyleGAN2 generator (basicsr ``StyleGAN2Generator``): equalized layers, FIR resampling."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 resample_kernel: Sequence[float] = (1, 3, 3, 1), lr_mlp: float = 0.01, narrow: float = 1,
                 sft_half: bool = False):
        super().__init__(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, narrow=narrow, lr_mlp=lr_mlp, sft_half=sft_half,
                         equalized=True, resample_kernel=tuple(resample_kernel))


class StyleGAN2GeneratorBilinear(_StyleGAN2Base):
    """GFPGAN's bilinear StyleGAN2: equalized layers, resampling by interpolation (no upfirdn2d)."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 lr_mlp: float = 0.01, narrow: float = 1, interpolation_mode: str = "bilinear",
                 sft_half: bool = False):
        super().__init__(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, narrow=narrow, lr_mlp=lr_mlp, sft_half=sft_half,
                         equalized=True, resample_kernel=None, interpolation_mode=interpolation_mode)


class StyleGAN2GeneratorClean(_StyleGAN2Base):
    """GFPGAN's clean StyleGAN2: plain nn.Linear / pre-scaled weights, bilinear resampling."""

    def __init__(self, out_size: int, num_style_feat: int = 512, num_mlp: int = 8, channel_multiplier: float = 2,
                 narrow: float = 1, sft_half: bool = False):
        super().__init__(out_size=out_size, num_style_feat=num_style_feat, num_mlp=num_mlp,
                         channel_multiplier=channel_multiplier, narrow=narrow, lr_mlp=1.0, sft_half=sft_half,
                         equalized=False, resample_kernel=None)
