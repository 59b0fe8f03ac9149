"""Getting networks: safe checkpoint reading, architecture detection, the descriptor that says
how to call a network, the weights zoo (downloads, cache, checksums) and the v1.2 converter.

Depends on :mod:`facerestore.archs` only; nothing here knows about images or the pipeline.
"""
from .descriptor import ModelDescriptor, Purpose, describe
from .loading import CheckpointError, LoadedModel, load, load_model

__all__ = ["CheckpointError", "LoadedModel", "ModelDescriptor", "Purpose", "describe", "load", "load_model"]
