"""Stand-ins and small models shared by the tests (pytest does not collect this module)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# A 32-px GFPGAN, 32 decoder / 16 U-Net channels: every code path, a few ms per forward.
TINY_GFPGAN = dict(out_size=32, num_style_feat=32, narrow=1 / 16, num_mlp=2, input_is_latent=True,
                   different_w=True, sft_half=True)

# Small but real: the U-Net, CS-SFT and StyleGAN2 decoder of v1.4 at 1/8 of the width (~4 MB at 512 px).
TINY_CLEAN = dict(num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.125, different_w=True,
                  input_is_latent=True, sft_half=True)


def write_tiny_checkpoint(path, out_size: int = 512):
    """A seeded TINY_CLEAN GFPGANv1Clean saved in the release layout (``params_ema``) at ``path``;
    its descriptor gives it ``out_size`` crops. Returns ``path``. (The ``tiny_checkpoint`` fixture
    in conftest.py; the serve tests call it directly.)"""
    from facerestore.archs.gfpgan import GFPGANv1Clean

    torch.manual_seed(0)
    torch.save({"params_ema": GFPGANv1Clean(out_size=out_size, **TINY_CLEAN).state_dict()}, path)
    return path


def randomized(model: nn.Module, seed: int = 0) -> nn.Module:
    """Perturb every floating parameter and buffer so that zero-initialised biases and noise
    strengths count; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * torch.randn(t.shape, generator=g))
    return model.eval()


class NoDetector:
    def detect(self, img, conf_threshold=0.97):
        raise AssertionError("detection must be skipped when landmarks are given")


class FixedDetector:
    """Detects the given landmarks (so paths through detection are testable without weights)."""

    def __init__(self, landmarks):
        self.rows = []
        for lm in landmarks:
            x1, y1 = lm.min(0) - 20
            x2, y2 = lm.max(0) + 20
            self.rows.append(np.concatenate([[x1, y1, x2, y2, 0.99], lm.reshape(-1)]))

    def detect(self, img, conf_threshold=0.97):
        return np.array(self.rows, np.float32).reshape(-1, 15)
