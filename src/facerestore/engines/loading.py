"""``facerestore.load_model`` with a choice of engine."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models.loading import load_model as load_torch_model

__all__ = ["load_model"]


def load_model(name_or_path: str | Path | nn.Module, device: str | torch.device = "cpu", *,
               allow_download: bool = True, backend: str | None = None, half: bool = False) -> nn.Module:
    """A ready network from a zoo name, a weights file or a module, on an engine.

    ``backend``: ``None`` or ``"torch"`` gives the PyTorch module (eval mode, on ``device``), as
    before; ``"onnxruntime"`` / ``"openvino"`` that engine; ``"auto"`` the fastest installed for
    this kind of network on ``device`` (:func:`facerestore.engines.choose_backend`). Every result
    is called like the module and takes and returns torch tensors. ``half``: run in half
    precision (bf16 on CPU through OpenVINO or PyTorch, fp16 on CUDA).

    >>> face = load_model("v1.4", backend="auto")
    >>> image, _ = face(x, return_rgb=False, randomize_noise=False)
    """
    from ..export.half import to_half
    from .module import wrap

    module = load_torch_model(name_or_path, device, allow_download=allow_download)
    if backend is None or backend == "torch":
        if half:
            module = to_half(module, torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16)
        return module
    wrapped = wrap(module, backend=backend, device=device, half=half)
    if wrapped is module and half:  # stayed on PyTorch: cast it as the torch path does
        wrapped = to_half(module, torch.float16 if torch.device(device).type == "cuda" else torch.bfloat16)
    return wrapped
