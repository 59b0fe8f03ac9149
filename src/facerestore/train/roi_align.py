"""RoIAlign (He et al., Mask R-CNN) in plain PyTorch, with torchvision's ``ops.roi_align`` semantics.

GFPGAN crops eyes and mouth from the generated and the real face with it, and the component
discriminators' gradients flow back through the crop into the generator.

Each output bin is the mean of ``grid_h x grid_w`` bilinear samples at regularly spaced points of
the bin (``grid = sampling_ratio``, or ``ceil(roi_size / output_size)`` when it is <= 0). As in
torchvision's kernel, a sample outside ``[-1, size]`` contributes 0, coordinates below 0 clamp to
0, and the last row/column is repeated past the edge. ``aligned=True`` shifts the box by -0.5 px
(pixel centres); ``aligned=False`` (the default, and what GFPGAN uses) forces boxes to >= 1 px.

Bilinear sampling and its validity test are separable in y and x, so the mean over a bin's grid
is ``Ay @ image @ Ax^T`` with one small interpolation matrix per axis and box.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _axis_weights(start: Tensor, length: Tensor, bins: int, grid: int, size: int) -> Tensor:
    """(bins, size) matrix: row b averages the bilinear weights of bin b's ``grid`` samples."""
    dtype = start.dtype
    if grid == 0:  # an empty box (aligned=True): torchvision's bins are 0
        return torch.zeros(bins, size, dtype=dtype)
    bin_size = length / bins
    b = torch.arange(bins, dtype=dtype).repeat_interleave(grid)
    g = torch.arange(grid, dtype=dtype).repeat(bins)
    t = start + b * bin_size + (g + 0.5) * bin_size / grid  # sample coordinates, (bins * grid,)
    valid = ((t >= -1.0) & (t <= size)).to(dtype)
    t = t.clamp(min=0)
    low = t.floor().long().clamp(max=size - 1)
    at_edge = low >= size - 1
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(t), t - low.to(dtype))
    w = torch.zeros(bins * grid, size, dtype=dtype)
    rows = torch.arange(bins * grid)
    w.index_put_((rows, low), (1 - frac) * valid, accumulate=True)
    w.index_put_((rows, high), frac * valid, accumulate=True)
    return w.view(bins, grid, size).sum(1)


def roi_align(input: Tensor, boxes: Tensor, output_size: int | tuple[int, int], spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False) -> Tensor:
    """Crop and resample boxes from a batch of feature maps.

    Args:
        input: (N, C, H, W).
        boxes: (K, 5) rows ``(batch_index, x1, y1, x2, y2)`` in input pixels / ``spatial_scale``.
        output_size: (out_h, out_w) or one int.

    Returns:
        (K, C, out_h, out_w); differentiable with respect to ``input``.
    """
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    _, _, h, w = input.shape
    if boxes.numel() == 0:
        return input.new_zeros(0, input.shape[1], ph, pw)
    rois = boxes.detach().to(device="cpu", dtype=input.dtype)
    offset = 0.5 if aligned else 0.0
    ays, axs = [], []
    for roi in rois:
        x1, y1, x2, y2 = roi[1:] * spatial_scale - offset
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
        gh = sampling_ratio if sampling_ratio > 0 else int(math.ceil((rh / ph).item()))
        gw = sampling_ratio if sampling_ratio > 0 else int(math.ceil((rw / pw).item()))
        ays.append(_axis_weights(y1, rh, ph, gh, h) / max(gh, 1))
        axs.append(_axis_weights(x1, rw, pw, gw, w) / max(gw, 1))
    ay = torch.stack(ays).to(input.device)  # (K, ph, H)
    ax = torch.stack(axs).to(input.device)  # (K, pw, W)
    feats = input[rois[:, 0].long().to(input.device)]  # (K, C, H, W)
    return torch.einsum("kph,kchw,kqw->kcpq", ay, feats, ax)
