"""Moved to :mod:`facerestore.models.convert`; this name keeps old imports working (same module object)."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("facerestore.models.convert")
