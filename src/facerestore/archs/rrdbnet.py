"""RRDBNet: the ESRGAN / Real-ESRGAN super-resolution network (BasicSR's ``RRDBNet``).

Used as the background upsampler (RealESRGAN_x2plus.pth, RealESRGAN_x4plus.pth). Parameter
names follow the official state dicts: ``conv_first``, ``body.{i}.rdb{1,2,3}.conv{1..5}``,
``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``.

The trunk always upsamples by 4 (two nearest x2 + conv steps). Scales 2 and 1 are obtained
by pixel-unshuffling the input first (by 2 or 4), so ``conv_first`` sees
``num_in_ch * (4 // scale) ** 2`` channels: 12 for the x2plus model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ops import fast_layout

# Pixel-unshuffle factor applied in front of the x4 trunk, per output scale.
UNSHUFFLE_FACTOR = {4: 1, 2: 2, 1: 4}


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the residual is scaled by 0.2 (ESRGAN)."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        # conv_k sees the block input plus the k-1 growth outputs before it.
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        # Small initial residuals keep the very deep trunk stable at the start of training.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Activations and the residual run in place on fresh conv outputs (their backward does
        # not need them); conv1 reads x directly, as torch.cat of one tensor would copy it.
        feats = [x, F.leaky_relu_(self.conv1(x), 0.2)]
        for conv in (self.conv2, self.conv3, self.conv4):
            feats.append(F.leaky_relu_(conv(torch.cat(feats, 1)), 0.2))
        return self.conv5(torch.cat(feats, 1)).mul_(0.2).add_(x)


class RRDB(nn.Module):
    """Residual in Residual Dense Block: three dense blocks, residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))).mul_(0.2).add_(x)  # rdb3's output is fresh


class RRDBNet(nn.Module):
    """ESRGAN generator. Input (B, num_in_ch, H, W), output (B, num_out_ch, H*scale, W*scale).

    For scale 2 (or 1), H and W must be divisible by 2 (or 4). The output is not clamped.
    """

    channels_last = False  # NHWC activations on CPU: faster, not bit-exact (archs.ops.use_channels_last)

    def __init__(
        self,
        num_in_ch: int,
        num_out_ch: int,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        if scale not in UNSHUFFLE_FACTOR:
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, got {scale}")
        self.scale = scale
        self.unshuffle = UNSHUFFLE_FACTOR[scale]
        self.conv_first = nn.Conv2d(num_in_ch * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = fast_layout(x, self.channels_last)  # opt-in NHWC on CPU: 1.3x here, not bit-exact
        if self.unshuffle > 1:
            # (B, C, H, W) -> (B, C*r*r, H/r, W/r); channel order (c, i, j) as in BasicSR.
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = self.conv_body(self.body(feat)).add_(feat)  # a + b == b + a exactly
        for conv in (self.conv_up1, self.conv_up2):  # two x2 steps: (h, w) -> (4h, 4w)
            feat = F.leaky_relu_(conv(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu_(self.conv_hr(feat), 0.2)).contiguous()  # NCHW, as the official code
