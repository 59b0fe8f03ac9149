"""Run the networks elsewhere or in less precision: ONNX export, half precision.

    from facerestore.export import export_onnx, to_half

Both are thin layers over ``facerestore.archs``; ``onnx`` / ``onnxruntime`` are optional
(``pip install facerestore[export]``) and imported only when an export or a check runs.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["HALF_DTYPES", "OnnxExport", "OnnxRuntimeModel", "check_onnx", "export_onnx", "to_half"]

_EXPORTS = {"HALF_DTYPES": ".half", "to_half": ".half",
            "OnnxExport": ".onnx", "OnnxRuntimeModel": ".onnx", "check_onnx": ".onnx", "export_onnx": ".onnx"}

if TYPE_CHECKING:  # pragma: no cover
    from .half import HALF_DTYPES, to_half
    from .onnx import OnnxExport, OnnxRuntimeModel, check_onnx, export_onnx


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facerestore.export' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
