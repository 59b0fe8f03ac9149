"""Half precision: the unsafe reductions stay in fp32, so bf16 / fp16 outputs stay finite and close.

Metric for "close": the mean abs difference to the fp32 output after scaling both so that the fp32
output spans [-1, 1] (divided by its max abs value), <= 1e-2. A trained face model outputs
[-1, 1], which becomes 255 grey levels, so this is "1.3 grey levels on average"; a random-weight
model's output scale is arbitrary (here 2-10), hence the scaling. bf16 keeps 8 mantissa bits, so
single pixels of a deep network legitimately move more: the max abs difference (same scale) is
bounded loosely (<= 0.1) only to catch a broken layer. Random weights lack a trained model's scale
balance, so this is a floor, not a promise about real pixels.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from facerestore.archs.gfpgan import GFPGANv1, GFPGANv1Clean
from facerestore.archs.rrdbnet import RRDBNet
from facerestore.archs.stylegan2 import NormStyleCode, StyleGAN2GeneratorClean
from facerestore.export.half import to_half
from stand_ins import TINY_GFPGAN, randomized


def test_style_normalisation_does_not_overflow_fp16() -> None:
    # |x| > 256 makes x**2 overflow fp16 (65504): GFPGAN issue #50
    x = torch.randn(4, 64) * 1000
    want = NormStyleCode()(x)
    got = NormStyleCode()(x.half())
    assert got.dtype == torch.float16
    assert torch.isfinite(got).all()
    assert (got.float() - want).abs().max() <= 1e-2  # fp16 rounding of values of size ~1
    naive = x.half() * torch.rsqrt(torch.mean(x.half() ** 2, dim=1, keepdim=True) + 1e-8)
    assert not torch.isfinite(naive).all() or (naive.float() - want).abs().max() > 0.5  # what it guards against


def test_demodulation_sums_in_fp32() -> None:
    # large styles: the sum of squared modulated weights overflows fp16 unless widened
    g = randomized(StyleGAN2GeneratorClean(16, num_style_feat=16, num_mlp=1, channel_multiplier=1, narrow=1 / 16))
    with torch.no_grad():
        for conv in g.style_convs:
            conv.modulated_conv.modulation.weight.mul_(300)
    latent = torch.randn(2, g.num_latent, 16)
    with torch.inference_mode():
        want = g([latent], input_is_latent=True, randomize_noise=False)[0]
        for batch in (1, 2):  # the one-sample (modulated weights) and the batch (scaled activations) forms
            got = to_half(g, torch.float16)([latent[:batch].half()], input_is_latent=True, randomize_noise=False)[0]
            g.float()
            assert torch.isfinite(got).all()
            assert (got.float() - want[:batch]).abs().mean() <= 1e-2


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
@pytest.mark.parametrize("batch", [1, 2])
def test_gfpgan_bf16_close_to_fp32(cls: type, batch: int) -> None:
    model = randomized(cls(**TINY_GFPGAN))
    x = torch.rand(batch, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        want = model(x, return_rgb=False, randomize_noise=False)[0]
        half = to_half(model, "bf16")
        assert all(p.dtype == torch.bfloat16 for p in half.parameters())
        got = half(x.bfloat16(), return_rgb=False, randomize_noise=False)[0]
    assert got.dtype == torch.bfloat16
    assert torch.isfinite(got).all()
    scale = want.abs().max()
    assert scale > 0.1  # a real output
    diff = (got.float() - want).abs() / scale
    assert diff.mean() <= 1e-2, diff.mean()
    assert diff.max() <= 0.1, diff.max()


def test_rrdbnet_bf16_close_to_fp32() -> None:
    model = randomized(RRDBNet(3, 3, scale=2, num_feat=8, num_block=2, num_grow_ch=4))
    x = torch.rand(1, 3, 16, 16)
    with torch.inference_mode():
        want = model(x)
        got = to_half(model, torch.bfloat16)(x.bfloat16())
    assert torch.isfinite(got).all()
    assert (got.float() - want).abs().mean() / want.abs().max() <= 1e-2


def test_to_half_refuses_other_types() -> None:
    with pytest.raises(ValueError, match="float16 or torch.bfloat16"):
        to_half(nn.Linear(2, 2), torch.float64)
    with pytest.raises(ValueError, match="unknown half-precision type"):
        to_half(nn.Linear(2, 2), "fp8")
