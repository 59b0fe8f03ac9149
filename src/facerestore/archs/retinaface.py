"""RetinaFace face detector network (facexlib), ResNet-50 or MobileNet-0.25 backbone.

Parameter names match facexlib's released ``detection_Resnet50_Final.pth`` and
``detection_mobilenet0.25_Final.pth`` (after stripping DataParallel's ``module.``):

    body.*          backbone; ResNet-50 with torchvision's module tree (conv1, bn1, layer1..4),
                    or MobileNetV1-0.25 (stage1..3). Only the layers up to the last tapped stage.
    fpn.*           3-level feature pyramid (output1..3 lateral 1x1, merge1..2 3x3)
    ssh1..3.*       SSH context modules, one per level
    ClassHead.i / BboxHead.i / LandmarkHead.i   1x1 conv heads, 2 anchors per location

The module is only the network: it maps a BGR-minus-mean image to per-prior outputs.
Prior boxes, decoding, thresholding and NMS live in :mod:`facerestore.face.retinaface`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NUM_ANCHORS = 2  # per feature-map location: two min sizes per pyramid level

# network_name -> (channels of the three tapped backbone stages, FPN/SSH width)
_CONFIGS: dict[str, tuple[tuple[int, int, int], int]] = {
    "resnet50": ((512, 1024, 2048), 256),
    "mobile0.25": ((64, 128, 256), 64),
}


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
             slope: float | None = None) -> nn.Sequential:
    """conv (no bias) -> BN [-> LeakyReLU(slope)]; indices 0 / 1 / 2 as in the checkpoints."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if slope is not None:
        layers.append(nn.LeakyReLU(slope, inplace=True))  # on BN's fresh output
    return nn.Sequential(*layers)


def _conv_dw(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """MobileNetV1 depthwise-separable block: dw 3x3 (0,1,2) then pw 1x1 (3,4,5)."""
    return nn.Sequential(*_conv_bn(c_in, c_in, 3, stride, groups=c_in, slope=0.1),
                         *_conv_bn(c_in, c_out, 1, slope=0.1))


class MobileNetV1Body(nn.Module):
    """MobileNetV1 at width 0.25; returns the stride 8 / 16 / 32 features (64 / 128 / 256 ch)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 3, 2, slope=0.1),
            _conv_dw(8, 16, 1), _conv_dw(16, 32, 2), _conv_dw(32, 32, 1),
            _conv_dw(32, 64, 2), _conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3), torchvision's attribute names."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out.add_(identity))  # BN's fresh output; its backward does not need it


class ResNet50Body(nn.Module):
    """ResNet-50 without avgpool/fc; returns layer2 / layer3 / layer4 (strides 8 / 16 / 32)."""

    layer1: nn.Sequential  # added in __init__ by name, in a loop
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, blocks: tuple[int, int, int, int] = (3, 4, 6, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
            stride = 1 if i == 0 else 2
            layer = [Bottleneck(c_in, width, stride)]
            c_in = width * Bottleneck.expansion
            layer += [Bottleneck(c_in, width) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class FPN(nn.Module):
    """Top-down pyramid: 1x1 laterals, nearest upsampling, 3x3 merge on the two finer levels."""

    def __init__(self, in_channels: tuple[int, int, int], out_channels: int) -> None:
        super().__init__()
        slope = 0.1 if out_channels <= 64 else 0.0  # facexlib: leaky only for the narrow net
        self.output1 = _conv_bn(in_channels[0], out_channels, 1, slope=slope)
        self.output2 = _conv_bn(in_channels[1], out_channels, 1, slope=slope)
        self.output3 = _conv_bn(in_channels[2], out_channels, 1, slope=slope)
        self.merge1 = _conv_bn(out_channels, out_channels, 3, slope=slope)
        self.merge2 = _conv_bn(out_channels, out_channels, 3, slope=slope)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p1, p2, p3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        # sums go into the fresh upsampled maps: p1, p2 are saved by their in-place leaky ReLUs
        p2 = self.merge2(F.interpolate(p3, size=p2.shape[-2:], mode="nearest").add_(p2))
        p1 = self.merge1(F.interpolate(p2, size=p1.shape[-2:], mode="nearest").add_(p1))
        return [p1, p2, p3]


class SSH(nn.Module):
    """Single Stage Headless context module: 3x3, 5x5 (two 3x3), 7x7 (three 3x3) branches."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        slope = 0.1 if c_out <= 64 else 0.0
        self.conv3X3 = _conv_bn(c_in, c_out // 2, 3)
        self.conv5X5_1 = _conv_bn(c_in, c_out // 4, 3, slope=slope)
        self.conv5X5_2 = _conv_bn(c_out // 4, c_out // 4, 3)
        self.conv7X7_2 = _conv_bn(c_out // 4, c_out // 4, 3, slope=slope)
        self.conv7x7_3 = _conv_bn(c_out // 4, c_out // 4, 3)  # lower-case x: the official name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5_1 = self.conv5X5_1(x)
        b7 = self.conv7x7_3(self.conv7X7_2(b5_1))
        return F.relu_(torch.cat([self.conv3X3(x), self.conv5X5_2(b5_1), b7], dim=1))


class AnchorHead(nn.Module):
    """1x1 conv predicting ``values`` numbers per anchor; output (B, H*W*anchors, values)."""

    def __init__(self, c_in: int, values: int, anchors: int = NUM_ANCHORS) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(c_in, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)  # (B, H, W, anchors * values)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """RetinaFace network. ``network_name`` is "resnet50" or "mobile0.25".

    forward(x): x (B, 3, H, W) float, BGR pixels minus (104, 117, 123), no scaling.
    Returns, with P = sum over strides s in (8, 16, 32) of ceil(H/s) * ceil(W/s) * 2 priors:
      loc (B, P, 4) box offsets, conf (B, P, 2) softmax [background, face],
      landmarks (B, P, 10) offsets of 5 points (as facexlib's eval-mode forward).
    """

    def __init__(self, network_name: str = "resnet50") -> None:
        super().__init__()
        if network_name not in _CONFIGS:
            raise ValueError(f"network_name must be one of {sorted(_CONFIGS)}, got {network_name!r}")
        self.network_name = network_name
        in_channels, width = _CONFIGS[network_name]
        self.body = ResNet50Body() if network_name == "resnet50" else MobileNetV1Body()
        self.fpn = FPN(in_channels, width)
        self.ssh1 = SSH(width, width)
        self.ssh2 = SSH(width, width)
        self.ssh3 = SSH(width, width)
        self.ClassHead = nn.ModuleList([AnchorHead(width, 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([AnchorHead(width, 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([AnchorHead(width, 10) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(self.body(x))
        feats = [ssh(p) for ssh, p in zip((self.ssh1, self.ssh2, self.ssh3), pyramid, strict=True)]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([head(f) for head, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return loc, F.softmax(logits, dim=-1), landmarks
