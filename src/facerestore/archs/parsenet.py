"""ParseNet face parsing network (facexlib, from PSFRGAN), with the official parameter names.

An encoder / residual body / decoder that predicts 19-class face-parsing logits and, as a side
output, a reconstructed image. GFPGANer uses the mask to paste restored faces back.
The released ``parsing_parsenet.pth`` is ``ParseNet(in_size=512, out_size=512, parsing_ch=19)``;
the other arguments keep facexlib's defaults.

Entry names: ``encoder.{i}``, ``body.{i}``, ``decoder.{i}`` (residual blocks with ``conv1``,
``conv2`` and, when the shape changes, ``shortcut_func``), ``out_img_conv``, ``out_mask_conv``;
every conv layer holds ``conv2d``, ``norm.norm`` and ``relu.func``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class NormLayer(nn.Module):
    """Holds the normalisation as ``.norm`` (so entries read ``norm.norm.*``)."""

    def __init__(self, channels: int, norm_type: str = "bn") -> None:
        super().__init__()
        norm_type = norm_type.lower()
        if norm_type == "bn":
            self.norm: nn.Module = nn.BatchNorm2d(channels)
        elif norm_type == "in":
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        elif norm_type == "gn":
            self.norm = nn.GroupNorm(32, channels)
        elif norm_type == "none":
            self.norm = nn.Identity()
        else:
            raise ValueError(f"norm_type must be bn, in, gn or none, got {norm_type!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ReluLayer(nn.Module):
    """Holds the activation as ``.func`` (so a PReLU's entry reads ``relu.func.weight``)."""

    def __init__(self, channels: int, relu_type: str = "relu") -> None:
        super().__init__()
        relu_type = relu_type.lower()
        # In place: ConvLayer applies it to the fresh output of its norm (or conv).
        if relu_type == "relu":
            self.func: nn.Module = nn.ReLU(inplace=True)
        elif relu_type == "leakyrelu":
            self.func = nn.LeakyReLU(0.2, inplace=True)
        elif relu_type == "prelu":
            self.func = nn.PReLU(channels)
        elif relu_type == "selu":
            self.func = nn.SELU(inplace=True)
        elif relu_type == "none":
            self.func = nn.Identity()
        else:
            raise ValueError(f"relu_type must be relu, leakyrelu, prelu, selu or none, got {relu_type!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)


class ConvLayer(nn.Module):
    """[nearest x2 up] -> reflection pad -> conv [stride 2 for "down"] -> norm -> activation."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, scale: str = "none",
                 norm_type: str = "none", relu_type: str = "none") -> None:
        super().__init__()
        self.upsample = scale == "up"
        self.pad = math.ceil((kernel_size - 1) / 2)
        stride = 2 if scale == "down" else 1
        # BN makes a conv bias redundant, so the official layer drops it only for "bn".
        self.conv2d = nn.Conv2d(c_in, c_out, kernel_size, stride, bias=norm_type.lower() != "bn")
        self.relu = ReluLayer(c_out, relu_type)
        self.norm = NormLayer(c_out, norm_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d(F.pad(x, [self.pad] * 4, mode="reflect"))
        return self.relu(self.norm(x))


class ResidualBlock(nn.Module):
    """conv1 (act) -> conv2 (no act) plus a shortcut; "down" strides conv2, "up" upsamples conv1."""

    def __init__(self, c_in: int, c_out: int, relu_type: str = "prelu", norm_type: str = "bn",
                 scale: str = "none") -> None:
        super().__init__()
        # Identity shortcut only when nothing changes; otherwise a plain 3x3 conv (bias, no norm).
        self.shortcut_func: nn.Module = (
            nn.Identity() if scale == "none" and c_in == c_out else ConvLayer(c_in, c_out, 3, scale))
        scale1, scale2 = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(c_in, c_out, 3, scale1, norm_type=norm_type, relu_type=relu_type)
        self.conv2 = ConvLayer(c_out, c_out, 3, scale2, norm_type=norm_type, relu_type="none")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)).add_(self.shortcut_func(x))  # conv2's fresh norm output


class ParseNet(nn.Module):
    """forward(x): x (B, 3, in_size, in_size) RGB in [-1, 1].

    Returns (out_mask (B, parsing_ch, out_size, out_size) logits, out_img (B, 3, out_size, out_size)).
    Channels double per down step from ``base_ch`` and halve per up step, clipped to ``ch_range``.
    """

    def __init__(self, in_size: int = 128, out_size: int = 128, min_feat_size: int = 32, base_ch: int = 64,
                 parsing_ch: int = 19, res_depth: int = 10, relu_type: str = "LeakyReLU",
                 norm_type: str = "bn", ch_range: tuple[int, int] = (32, 256)) -> None:
        super().__init__()
        min_ch, max_ch = ch_range

        def clip(c: int) -> int:
            return max(min_ch, min(c, max_ch))

        act = {"norm_type": norm_type, "relu_type": relu_type}
        min_feat_size = min(in_size, min_feat_size)
        down_steps = int(math.log2(in_size // min_feat_size))
        up_steps = int(math.log2(out_size // min_feat_size))

        encoder: list[nn.Module] = [ConvLayer(3, base_ch, 3)]
        head_ch = base_ch
        for _ in range(down_steps):
            encoder.append(ResidualBlock(clip(head_ch), clip(head_ch * 2), scale="down", **act))
            head_ch *= 2
        body = [ResidualBlock(clip(head_ch), clip(head_ch), **act) for _ in range(res_depth)]
        decoder: list[nn.Module] = []
        for _ in range(up_steps):
            decoder.append(ResidualBlock(clip(head_ch), clip(head_ch // 2), scale="up", **act))
            head_ch //= 2

        self.encoder = nn.Sequential(*encoder)
        self.body = nn.Sequential(*body)
        self.decoder = nn.Sequential(*decoder)
        self.out_img_conv = ConvLayer(clip(head_ch), 3)
        self.out_mask_conv = ConvLayer(clip(head_ch), parsing_ch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)
