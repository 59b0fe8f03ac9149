"""Rules that recognise an architecture and its constructor arguments from a state dict.

Each family module (``gfpgan``, ``others``, ``facexlib``) exports ``RULES``: a list of
:class:`ArchRule`. :mod:`facerestore.models.loading` tries them in order; the first rule whose
``detect_kwargs`` returns a dict wins, and the module is built with those keyword arguments
and loaded with ``strict=True``. Rules see canonical state dicts: unwrapped from
``params_ema``/``params`` and with any ``module.`` prefix removed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class ArchRule:
    name: str  # the official class name, e.g. "GFPGANv1Clean"
    module_class: type[nn.Module]
    # Returns the constructor kwargs when the state dict belongs to this architecture, else None.
    detect_kwargs: Callable[[StateDict], dict[str, Any] | None]
