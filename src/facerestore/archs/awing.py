"""AWing FAN: the 98-point (WFLW) face landmark network used for the LMD metric.

Four stacked hourglasses with CoordConv inputs (Wang, Bo and Fuxin, "Adaptive Wing Loss", ICCV
2019), as facexlib's ``FAN(num_modules=4, num_landmarks=98)`` whose released weights are
``alignment_WFLW_4HG.pth``. Parameter names follow facexlib's (``conv1.conv``, ``conv2.bn1``,
``m0.coordconv.conv``, ``m0.b1_4``, ``top_m_0``, ``conv_last0``, ``bn_end0``, ``l0``, ``bl0``,
``al0``, ...), so that file loads strictly. Input: (N, 3, 256, 256) RGB in [0, 1]; output: the
heatmaps of the last stack, (N, 99, 64, 64) (98 landmarks + a boundary map).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _coords(x: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CoordConv channels for a square ``size`` map: the row coordinate, the column coordinate
    (both in [-1, 1]) and their radius divided by its maximum, each (N, 1, size, size)."""
    ramp = torch.arange(size, dtype=torch.float32, device=x.device) / (size - 1) * 2 - 1
    rows = ramp.view(1, 1, size, 1).expand(x.shape[0], 1, size, size)
    cols = ramp.view(1, 1, 1, size).expand(x.shape[0], 1, size, size)
    r = torch.sqrt(rows ** 2 + cols ** 2)
    return rows, cols, r / r.max()


class CoordConv(nn.Module):
    """Concatenate coordinate channels (and, after the first hourglass, the coordinates masked by
    the previous boundary heatmap > 0.05), then convolve."""

    def __init__(self, size: int, in_channels: int, out_channels: int, boundary: bool, kernel_size: int,
                 stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.size = size
        self.boundary = boundary
        self.conv = nn.Conv2d(in_channels + 3 + (2 if boundary else 0), out_channels, kernel_size,
                              stride=stride, padding=padding)

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None = None) -> torch.Tensor:
        rows, cols, r = _coords(x, self.size)
        parts = [x, rows, cols, r]
        if self.boundary and heatmap is not None:
            edge = torch.clamp(heatmap[:, -1:], 0.0, 1.0) > 0.05
            parts += [torch.where(edge, rows, torch.zeros_like(rows)), torch.where(edge, cols, torch.zeros_like(cols))]
        return self.conv(torch.cat(parts, 1))


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation residual block whose three convolutions (out/2, out/4, out/4 channels) are
    concatenated; a BN-ReLU-1x1 projection on the skip when the width changes."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = _conv3x3(c_in, c_out // 2)
        self.bn2 = nn.BatchNorm2d(c_out // 2)
        self.conv2 = _conv3x3(c_out // 2, c_out // 4)
        self.bn3 = nn.BatchNorm2d(c_out // 4)
        self.conv3 = _conv3x3(c_out // 4, c_out // 4)
        self.downsample = (nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, 1, bias=False))
                           if c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o1 = self.conv1(F.relu(self.bn1(x)))
        o2 = self.conv2(F.relu(self.bn2(o1)))
        o3 = self.conv3(F.relu(self.bn3(o2)))
        skip = x if self.downsample is None else self.downsample(x)
        return torch.cat((o1, o2, o3), 1) + skip


class HourGlass(nn.Module):
    def __init__(self, depth: int, first: bool) -> None:
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(64, 256, 256, boundary=not first, kernel_size=1)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(256, 256))
            self.add_module(f"b2_{level}", ConvBlock(256, 256))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(256, 256))
            self.add_module(f"b3_{level}", ConvBlock(256, 256))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = self.get_submodule(f"b1_{level}")(x)
        low = self.get_submodule(f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self.get_submodule("b2_plus_1")(low)
        low = self.get_submodule(f"b3_{level}")(low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor, heatmap: torch.Tensor | None) -> torch.Tensor:
        return self._level(self.depth, self.coordconv(x, heatmap))


class AWingFAN(nn.Module):
    def __init__(self, num_modules: int = 4, num_landmarks: int = 98) -> None:
        super().__init__()
        if num_modules < 1:
            raise ValueError(f"AWingFAN needs at least one hourglass module, got num_modules={num_modules}")
        self.num_modules = num_modules
        self.conv1 = CoordConv(256, 3, 64, boundary=False, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(4, first=i == 0))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, num_landmarks + 1, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks + 1, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        previous = self.conv4(self.conv3(x))
        heat = None
        for i in range(self.num_modules):
            hg = self.get_submodule(f"m{i}")(previous, heat)
            ll = self.get_submodule(f"top_m_{i}")(hg)
            ll = F.relu(self.get_submodule(f"bn_end{i}")(self.get_submodule(f"conv_last{i}")(ll)))
            heat = self.get_submodule(f"l{i}")(ll)
            if i < self.num_modules - 1:
                previous = previous + self.get_submodule(f"bl{i}")(ll) + self.get_submodule(f"al{i}")(heat)
        assert heat is not None  # num_modules >= 1, checked in __init__
        return heat
