"""VGG19 feature extractor for the perceptual and style losses (no torchvision).

The convolutions sit at torchvision's ``features.N`` indices, so torchvision's released
``vgg19-dcbb9e9d.pth`` loads into :class:`VGG19` directly (its ``classifier.*`` entries are ignored:
the losses use only the features). Layer names (``conv1_2``, ``relu3_4``, ...) follow BasicSR's
``VGGFeatureExtractor``, which the official GFPGAN training options refer to.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

# torchvision's configurations: numbers = conv output channels, "M" = 2x2 max pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def vgg_features(cfg: Sequence[int | str], init: Callable[[nn.Conv2d], None] | None = None) -> nn.Sequential:
    """torchvision's VGG ``features`` (no batch norm) for a configuration, at the same indices, so
    its released weights load by name. ``init`` runs on each conv as it is made (torchvision's
    order of random draws). ReLUs are not in place: features are returned uncopied."""
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            conv = nn.Conv2d(c, int(v), 3, padding=1)
            if init is not None:
                init(conv)
            layers += [conv, nn.ReLU()]
            c = int(v)
    return nn.Sequential(*layers)


def _torchvision_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def vgg19_layer_names() -> list[str]:
    """Name of each entry of ``features``: conv{block}_{i}, relu{block}_{i}, pool{block}."""
    names, block, i = [], 1, 1
    for v in VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, i = block + 1, 1
        else:
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
            i += 1
    return names


class VGG19(nn.Module):
    """``features`` of torchvision's VGG19 (configuration E, no batch norm), with its init."""

    def __init__(self):
        super().__init__()
        self.features = vgg_features(VGG19_CFG, init=_torchvision_init)

    def load_torchvision(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load torchvision's vgg19 state dict (``features.*`` strictly, ``classifier.*`` dropped)."""
        feats = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
        self.load_state_dict(feats, strict=True)


class VGGFeatureExtractor(nn.Module):
    """Features of the named VGG19 layers, with BasicSR's input handling: ``range_norm`` maps
    [-1, 1] to [0, 1], ``use_input_norm`` applies the ImageNet mean/std. The network is frozen."""

    mean: Tensor  # buffers, registered in __init__
    std: Tensor

    def __init__(self, layer_names: Sequence[str], use_input_norm: bool = True, range_norm: bool = False,
                 vgg: VGG19 | None = None):
        super().__init__()
        names = vgg19_layer_names()
        unknown = [n for n in layer_names if n not in names]
        if unknown:
            raise ValueError(f"unknown VGG19 layers {unknown}; known: {names}")
        self.layer_names = list(layer_names)
        self.last = max(names.index(n) for n in layer_names)
        self.index = {names.index(n): n for n in layer_names}
        self.vgg = vgg if vgg is not None else VGG19()
        self.vgg.requires_grad_(False).eval()
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        super().train(mode)
        self.vgg.eval()  # no dropout/BN here, but keep it evaluation-only like the official
        return self

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(itertools.islice(self.vgg.features, self.last + 1)):
            x = layer(x)
            if i in self.index:
                out[self.index[i]] = x
        return out
