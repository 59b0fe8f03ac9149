"""The runtime layer: every network on the fastest engine at hand, with the same pixels.

    from facerestore.engines import wrap, load_model, choose_backend

Engines: ``torch`` (the module itself), ``onnxruntime`` and ``openvino`` (an exported ONNX graph,
checked against PyTorch and cached; see :mod:`.cache`). ``auto`` picks per device and per kind of
network (:func:`~.base.auto_order`). onnxruntime and OpenVINO are extras, imported only when used.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BACKENDS": ".base", "EngineUnavailableError": ".base", "auto_order": ".base", "choose_backend": ".base",
    "cpu_has_bf16": ".base", "engine_available": ".base", "engine_version": ".base",
    "EngineModule": ".module", "EngineNote": ".module", "GraphMismatchError": ".module", "wrap": ".module",
    "build_runner": ".module", "TOLERANCE": ".module",
    "cache_root": ".cache", "weights_sha256": ".cache",
    "load_model": ".loading",
}
# Spelled out (not list(_EXPORTS)) so that linters and type checkers see the public names;
# tests/test_engines.py checks the two agree.
__all__ = ["BACKENDS", "EngineUnavailableError", "auto_order", "choose_backend", "cpu_has_bf16", "engine_available",
           "engine_version", "EngineModule", "EngineNote", "GraphMismatchError", "wrap", "build_runner", "TOLERANCE",
           "cache_root", "weights_sha256", "load_model"]

if TYPE_CHECKING:  # pragma: no cover
    from .base import (
        BACKENDS,
        EngineUnavailableError,
        auto_order,
        choose_backend,
        cpu_has_bf16,
        engine_available,
        engine_version,
    )
    from .cache import cache_root, weights_sha256
    from .loading import load_model
    from .module import TOLERANCE, EngineModule, EngineNote, GraphMismatchError, build_runner, wrap


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facerestore.engines' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
