"""StyleGAN2's two custom ops in plain PyTorch: ``upfirdn2d`` and ``fused_leaky_relu``.

The official code ships CUDA extensions for both (and falls back to a slow reference on CPU).
Here both are built from ordinary differentiable PyTorch ops, so they run on any device and
support double backward (needed by R1 / path-length penalties). ``_upfirdn2d_ref`` is the
literal definition, kept beside the fast path for tests.
"""
from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample, FIR-filter and downsample a batch of images (``scipy.signal.upfirdn`` in 2-D).

    Per channel: insert ``up - 1`` zeros after every pixel, pad by ``pad = (p0, p1)`` on both
    axes (negative values crop), convolve with ``kernel`` (a true convolution: the kernel is
    flipped), then keep every ``down``-th pixel.

    Args:
        x: (B, C, H, W) images.
        kernel: (kh, kw) FIR filter.
        up, down: integer up- and down-sampling factors (same for both axes).
        pad: padding before filtering, in upsampled pixels, applied to top/left and bottom/right.

    Returns:
        (B, C, H', W') with ``H' = (H * up + p0 + p1 - kh) // down + 1`` (W' alike).

    Instead of materialising the zero-stuffed image, upsampling uses a strided transposed
    convolution (the same sum without the zeros) and downsampling a strided convolution.
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    y = x.reshape(b * c, 1, h, w)  # every channel filtered on its own
    f = kernel.to(dtype=x.dtype, device=x.device)[None, None]  # (1, 1, kh, kw)
    if up > 1:
        # conv_transpose2d(stride=up) is the full convolution of the zero-stuffed image with f;
        # its index m is index m - (k - 1) + p0 of the padded reference, hence the (crop) pads.
        y = F.conv_transpose2d(y, f, stride=up)
        y = F.pad(y, [p0 - kw + 1, p1 + up - kw, p0 - kh + 1, p1 + up - kh])
        y = y[:, :, ::down, ::down]
    else:
        y = F.pad(y, [p0, p1, p0, p1])
        y = F.conv2d(y, f.flip([2, 3]), stride=down)
    return y.reshape(b, c, y.shape[2], y.shape[3])


def _upfirdn2d_ref(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """``upfirdn2d`` spelled out step by step (slow, for tests)."""
    b, c, h, w = x.shape
    p0, p1 = pad
    # 1. zero-stuff: (B, C, H, 1, W, 1) -> pad the singleton axes to `up` -> (B, C, H*up, W*up)
    y = x.reshape(b, c, h, 1, w, 1)
    y = F.pad(y, [0, up - 1, 0, 0, 0, up - 1])
    y = y.reshape(b, c, h * up, w * up)
    # 2. pad (negative pads crop)
    y = F.pad(y, [p0, p1, p0, p1])
    # 3. FIR filter: correlation with the flipped kernel is convolution with the kernel
    f = kernel.to(x.dtype).flip([0, 1])[None, None]
    y = F.conv2d(y.reshape(b * c, 1, y.shape[2], y.shape[3]), f)
    # 4. decimate
    y = y[:, :, ::down, ::down]
    return y.reshape(b, c, y.shape[2], y.shape[3])


def records_grad(*tensors: Tensor | float) -> bool:
    """Whether autograd records ops on these tensors, which rules out some in-place shortcuts."""
    return torch.is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in tensors)


# ----------------------------------------------------------------------------- in-place shortcuts
# Large fresh tensors cost page faults on CPU, so the forwards overwrite tensors they own where
# autograd allows. Whether it allows depends on autograd state (a tensor saved for backward must
# not change), so every such decision lives in the few ops below, never inline in a forward.
# They also stay out of place while a graph is traced (ONNX export): the tracer loses writes
# made through a view (the SFT's half of the channels).
# ``x`` must be a fresh tensor that nothing else reads (a conv output, a sum just made).
def _may_overwrite(*tensors: Tensor | float) -> bool:
    # torch.jit.is_tracing is public API that torch.jit's __all__ leaves out
    return not records_grad(*tensors) and not torch.jit.is_tracing()  # pyright: ignore[reportPrivateImportUsage]


def add_into(x: Tensor, other: Tensor) -> Tensor:
    """``x + other``, written into ``x`` when autograd records neither (the in-place leaky ReLU
    that may have produced ``x`` saved it for its backward)."""
    return x.add_(other) if _may_overwrite(x, other) else x + other


def mul_into(x: Tensor, other: Tensor | float) -> Tensor:
    """``x * other``, written into ``x`` when autograd records neither (``mul``'s backward needs
    the original ``x`` as soon as ``other`` requires grad, and some producers saved ``x``)."""
    return x.mul_(other) if _may_overwrite(x, other) else x * other


def scale_shift_into(x: Tensor, scale: Tensor, shift: Tensor, half: bool = False) -> Tensor:
    """Spatial feature transform ``x * scale + shift``, on the second half of the channels only
    when ``half`` (GFPGAN's ``sft_half``); written into ``x`` when autograd records none of them."""
    if _may_overwrite(x, scale, shift):
        target = x[:, x.size(1) // 2:] if half else x
        target.mul_(scale).add_(shift)
        return x
    if not half:
        return x * scale + shift
    same, sft = torch.split(x, x.size(1) // 2, dim=1)
    return torch.cat([same, sft * scale + shift], dim=1)


def wide(x: Tensor) -> Tensor:
    """``x`` in at least fp32 (fp16 / bf16 are widened; fp32 and fp64 stay as they are): for the
    sums of squares that overflow fp16 (style normalisation, demodulation; GFPGAN issue #50)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def fast_layout(x: Tensor, enabled: bool) -> Tensor:
    """``x`` in channels-last (NHWC) memory on CPU when ``enabled`` (see ``use_channels_last``)."""
    if enabled and x.device.type == "cpu" and x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


class _LayoutSwitch(Protocol):
    """A network with the class-level ``channels_last = False`` switch (GFPGAN, RRDBNet, ...)."""

    channels_last: bool


def use_channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Opt in (or out) to channels-last activations on CPU for every network inside ``model``.

    oneDNN convolutions take channels-last (NHWC) tensors as they are, while NCHW ones are
    reordered to a blocked layout and back around every convolution: measured 1.2-1.7x per 3x3
    conv at GFPGAN's shapes, 1.3-1.5x for whole GFPGANv1Clean and RRDBNet forwards, 1.1x for
    RestoreFormer (benchmarks/README.md). Interpolation, element-wise ops and the next conv keep
    the layout; outputs are returned NCHW. The catch: convolutions sum in another order, so the
    outputs move by float32 rounding (GFPGANv1Clean 4e-6, RRDBNet 1e-5 against the official
    code), enough to flip a few 8-bit pixels of the official pipeline's output. Off by default,
    because facerestore promises the official pixels; turn it on where speed matters more.
    CUDA / MPS: the switch is ignored (not measured there).
    """
    for module in model.modules():
        if hasattr(type(module), "channels_last"):
            cast(_LayoutSwitch, module).channels_last = enabled
    return model


def fused_leaky_relu(x: Tensor, bias: Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = 2**0.5, inplace: bool = False) -> Tensor:
    """``leaky_relu(x + bias) * scale``, with ``bias`` (C,) added along dim 1 of x (B, C, ...).

    The official CUDA kernel fuses these three steps; unfused they are the same arithmetic and
    autograd handles every order of derivative. ``scale = sqrt(2)`` keeps the activation's
    second moment at 1 for unit-Gaussian input ("equalized learning rate").

    ``inplace=True`` lets the function overwrite ``x`` (pass it only for a fresh tensor nobody
    else reads, such as a conv output). Large fresh tensors are costly on CPU (page faults), so
    each step reuses a buffer where autograd allows: the leaky ReLU runs in place only when no
    gradient is recorded, as its in-place backward needs its output, which the scaling overwrites.
    """
    if bias is not None:
        bias = bias.view(1, -1, *([1] * (x.ndim - 2)))
        x = x.add_(bias) if inplace else x + bias
        inplace = True  # x is now a fresh tensor of ours
    if inplace and _may_overwrite(x):
        return F.leaky_relu_(x, negative_slope).mul_(scale)
    # out of place, leaky_relu saves its input for backward, so scaling its output in place is safe
    return F.leaky_relu(x, negative_slope).mul_(scale)


class FusedLeakyReLU(nn.Module):
    """A learned per-channel bias followed by ``fused_leaky_relu`` (official parameter: ``bias``).

    ``inplace=True`` overwrites the input, as ``nn.LeakyReLU(inplace=True)``: use it only after a
    layer whose fresh output nothing else reads.
    """

    def __init__(self, channel: int, negative_slope: float = 0.2, scale: float = 2**0.5, inplace: bool = False):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))
        self.negative_slope = negative_slope
        self.scale = scale
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale, self.inplace)
