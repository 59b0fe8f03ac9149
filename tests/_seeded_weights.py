"""Weights from a recipe, so that fixtures need not store them (tests/fixtures/official_families/).

A *spec* lists a network's state dict as ``{name: (shape, mean, std)}``, the mean and std being
those of the official module's own initial tensor. :func:`seeded_weights` turns it into tensors:
``mean + max(std, 0.02) * N(0, 1)``, drawn from a generator seeded by the entry's name, so the
same spec gives the same bits in any process and in any order. No weight is a round default
(zeros, ones) that could hide a wrong or skipped key. scripts/make_family_fixtures.py builds the
official networks with these weights; tests/test_official_families.py rebuilds them from the spec.
Used by both; plain torch, no facerestore import.
"""
from __future__ import annotations

import zlib
from typing import Mapping

import torch

MIN_STD = 0.02

Spec = Mapping[str, tuple[tuple[int, ...], float, float]]


def spec_of(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[tuple[int, ...], float, float]]:
    """The recipe inputs of a state dict: shape, mean and std of every floating tensor."""
    spec = {}
    for name, t in state_dict.items():
        if t.is_floating_point():
            t64 = t.double()
            std = t64.std().item() if t.numel() > 1 else 0.0
            spec[name] = (tuple(t.shape), round(t64.mean().item(), 6), round(std, 6))
    return spec


def seeded_weights(spec: Spec, seed: int) -> dict[str, torch.Tensor]:
    """float32 tensors for every entry of ``spec`` (see the module docstring)."""
    out = {}
    for name, (shape, mean, std) in spec.items():
        g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
        noise = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
        out[name] = noise * float(max(std, MIN_STD)) + float(mean)
    return out


def seeded_input(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A U[-1, 1) image batch."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
