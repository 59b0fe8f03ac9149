"""ResNetArcFace: the face-identity embedding network used by GFPGAN's identity loss.

The released ``arcface_resnet18.pth`` is ``ResNetArcFace('IRBlock', [2, 2, 2, 2], use_se=False)``.
Input: (B, 1, 128, 128) grey faces in [-1, 1]; output: (B, 512) embeddings (not normalised).
Parameter names follow the official state dict (``conv1``, ``bn1``, ``prelu``, ``layer1..4``,
``bn4``, ``fc5``, ``bn5``). Only the IR block is supported: the official ``_make_layer`` passes
``use_se`` to every block, which its BasicBlock and Bottleneck do not accept.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: rescale channels by a gate computed from their global means."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction),
            nn.PReLU(),
            nn.Linear(channel // reduction, channel),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3)))  # (B, C)
        return x * gate[:, :, None, None]


class IRBlock(nn.Module):
    """Improved residual block: BN -> conv -> BN -> PReLU -> conv(stride) -> BN [-> SE], + skip.

    One PReLU (a single shared slope) is applied both inside the branch and after the sum.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        use_se: bool = True,
    ) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(inplanes)
        self.conv1 = conv3x3(inplanes, inplanes)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.prelu = nn.PReLU()
        self.conv2 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.se = SEBlock(planes) if use_se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        residual = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + residual)


class ResNetArcFace(nn.Module):
    """ArcFace ResNet. (B, 1, 128, 128) -> (B, 512); the stem halves the size, layers 2-4 halve
    it again, so layer4 gives (B, 512, 8, 8), which ``fc5`` flattens."""

    def __init__(self, block: str | type[IRBlock], layers: Sequence[int], use_se: bool = True) -> None:
        super().__init__()
        if block not in ("IRBlock", IRBlock):
            raise ValueError(f"ResNetArcFace supports block='IRBlock' only, got {block!r}")
        if len(layers) != 4:
            raise ValueError(f"ResNetArcFace needs 4 layer depths, got {list(layers)}")
        self.use_se = use_se
        self.conv1 = nn.Conv2d(1, 64, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.layer1 = self._make_layer(64, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(64, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(128, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(256, 512, layers[3], stride=2)
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, 512)
        self.bn5 = nn.BatchNorm1d(512)
        self._init_weights()

    def _make_layer(self, inplanes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        blocks = [IRBlock(inplanes, planes, stride, downsample, use_se=self.use_se)]
        blocks += [IRBlock(planes, planes, use_se=self.use_se) for _ in range(1, num_blocks)]
        return nn.Sequential(*blocks)

    def _init_weights(self) -> None:
        # As the official model: Xavier for conv/linear weights, identity BatchNorms.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))  # (B, 64, 64, 64)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 512, 8, 8)
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))  # (B, 512)
