"""facerestore: blind face restoration (GFPGAN, RestoreFormer(++), CodeFormer, GPEN) in plain PyTorch.

The public names are imported lazily, so ``import facerestore`` is cheap and has no side effects.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "facerestore.engines.loading",  # models.loading.load_model + backend=
    "CheckpointError": "facerestore.models.loading",
    "Restorer": "facerestore.pipeline.restorer",
    "Upsampler": "facerestore.pipeline.upsampler",
    "load_detector": "facerestore.face.detectors",
}

# Spelled out so that linters and type checkers see the public names (test_layout checks they
# match _EXPORTS).
__all__ = ["load_model", "CheckpointError", "Restorer", "Upsampler", "load_detector", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .engines.loading import load_model
    from .face.detectors import load_detector
    from .models.loading import CheckpointError
    from .pipeline.restorer import Restorer
    from .pipeline.upsampler import Upsampler


_SUBPACKAGES = ("archs", "engines", "face", "io", "models", "pipeline")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:  # facerestore.models.load(...) after a bare `import facerestore`
        return importlib.import_module(f"facerestore.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facerestore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
