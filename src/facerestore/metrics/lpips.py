"""LPIPS with the VGG trunk (Zhang et al. 2018, ``lpips.LPIPS(net='vgg')``, version 0.1), as the
GFPGAN authors measure it: RGB inputs in [−1, 1].

A plain module: torchvision's VGG16 ``features`` layers (same indices, so torchvision's released
``vgg16-397923af.pth`` loads into ``net.features`` by name), the LPIPS scaling layer, and five
1x1 linear layers named as in the released ``weights/v0.1/vgg.pth`` (``lin{k}.model.1.weight``).
Distance = Σ_k mean_hw( w_k · (f̂0_k − f̂1_k)² ), where f̂ are the relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3 features normalised to unit length over channels (eps 1e-10).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..archs.vgg import VGG16_CFG, vgg_features

# End index (exclusive) in ``features`` of each slice whose last ReLU output LPIPS compares.
_SLICE_ENDS = (4, 9, 16, 23, 30)
CHANNELS = (64, 128, 256, 512, 512)


def vgg16_features() -> nn.Sequential:
    return vgg_features(VGG16_CFG)


class _Lin(nn.Module):
    """Dropout (inactive at evaluation) then a 1x1 convolution to one channel, no bias."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(nn.Module):
    shift: torch.Tensor  # buffers, registered in __init__
    scale: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.features = vgg16_features()
        for k, c in enumerate(CHANNELS):
            self.add_module(f"lin{k}", _Lin(c))

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs, start = [], 0
        h = (x - self.shift) / self.scale
        for end in _SLICE_ENDS:
            for i in range(start, end):
                h = self.features[i](h)
            outs.append(h)
            start = end
        return outs

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Distances (N,) between two RGB batches (N, 3, H, W) in [−1, 1]."""
        total = x0.new_zeros(x0.shape[0])
        for k, (f0, f1) in enumerate(zip(self._taps(x0), self._taps(x1), strict=True)):
            f0 = f0 / (torch.sqrt(torch.sum(f0 ** 2, dim=1, keepdim=True)) + 1e-10)
            f1 = f1 / (torch.sqrt(torch.sum(f1 ** 2, dim=1, keepdim=True)) + 1e-10)
            total = total + getattr(self, f"lin{k}")((f0 - f1) ** 2).mean(dim=(1, 2, 3))
        return total


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    # The released files were saved from CUDA tensors in the legacy format: map them to the CPU.
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: not a state dict")
    return sd


def load_lpips(vgg16_path: str | Path, lin_path: str | Path, device: str = "cpu") -> LPIPS:
    """LPIPS-VGG from torchvision's ``vgg16`` weights and the lpips v0.1 ``vgg.pth``, both strict."""
    model = LPIPS()
    vgg = _read_state(Path(vgg16_path))
    feats = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")}
    if not feats:
        raise ValueError(f"{vgg16_path}: no 'features.*' tensors; expected torchvision's vgg16 state dict")
    model.features.load_state_dict(feats, strict=True)
    lins = _read_state(Path(lin_path))
    wanted = {k: v for k, v in model.state_dict().items() if k.startswith("lin")}
    if set(lins) != set(wanted):
        raise ValueError(f"{lin_path}: keys {sorted(lins)} are not the LPIPS v0.1 VGG layout {sorted(wanted)}")
    model.load_state_dict({**model.state_dict(), **lins}, strict=True)
    return model.to(device).eval()


def to_lpips_input(bgr: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) RGB in [−1, 1] from a BGR image in [0, 255] (uint8 or float)."""
    x = np.asarray(bgr, dtype=np.float32) / 255.0
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=2)
    x = x[..., 2::-1] if x.shape[2] >= 3 else x
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    return (t - 0.5) / 0.5
