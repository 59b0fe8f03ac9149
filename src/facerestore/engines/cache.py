"""The graph cache: each network is exported and checked once, then reused.

An entry is ``<architecture>-<weights sha256>-<engine>-<engine version>-fr<facerestore version>-g<format>``:
the ONNX file and a sidecar (``.json``) holding the file's sha256, written after the file, both
atomically (:mod:`facerestore.io.atomic`). An entry is used only when the sidecar exists and the
file's sha256 matches it, so a truncated, altered or half-written graph is rebuilt, never run.
Building takes a per-entry lock (``fcntl.flock`` on ``locks/<key>.lock``), so two processes
starting at once build one file: the second waits, then finds the first's entry. The lock files
stay in ``locks/`` (deleting a lock file that another process waits on would let a third take a
new one at the same path while the second still holds the old), so the graphs' folder holds
only graphs and sidecars. OpenVINO's compiled models are cached beside
the graphs (``openvino/``), which saves its compilation at each start.

The folder: ``$FACERESTORE_GRAPH_CACHE``, else ``graphs/`` in the model cache
(``$FACERESTORE_HOME``, default ``~/.cache/facerestore``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..io.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["CACHE_ENV", "GraphEntry", "cache_root", "entry_for", "graph_lock", "weights_sha256"]

CACHE_ENV = "FACERESTORE_GRAPH_CACHE"


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from ..models.zoo import cache_dir

    return cache_dir() / "graphs"


def weights_sha256(module: nn.Module) -> str:
    """sha256 over the module's state dict (names, dtypes, shapes and bytes, in order): the same
    weights give the same key however they were loaded (a file, a zoo name, a module)."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.dtype == torch.bfloat16:  # numpy has no bf16: hash the same bits as int16
            t = t.view(torch.int16)
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class GraphEntry:
    """One cached graph: ``path`` (ONNX) and ``sidecar`` (its sha256 and what it is)."""

    path: Path
    key: str

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def lock_path(self) -> Path:
        """The build lock: in ``locks/`` beside the graphs, kept (never deleted) so that every
        process locks the same file."""
        return self.path.parent / "locks" / f"{self.key}.lock"

    def valid(self) -> bool:
        """The graph is whole and unchanged: its sha256 is the one recorded when it was written."""
        try:
            recorded = json.loads(self.sidecar.read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        try:
            return self.path.is_file() and _file_sha256(self.path) == recorded
        except OSError:
            return False

    def write(self, graph: bytes, info: dict) -> None:
        """The graph, then its sidecar: a reader that sees the sidecar sees the whole graph."""
        with contextlib.suppress(OSError):
            self.sidecar.unlink()  # an old sidecar must never vouch for the new file
        atomic_write_bytes(self.path, graph)
        record = {**info, "key": self.key, "sha256": hashlib.sha256(graph).hexdigest(), "bytes": len(graph)}
        atomic_write_text(self.sidecar, json.dumps(record, indent=1))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text)


def entry_for(architecture: str, weights: str, engine: str, engine_version: str, root: Path | None = None,
              ) -> GraphEntry:
    from .. import __version__
    from .graph import GRAPH_FORMAT

    key = (f"{_safe(architecture)}-{weights[:20]}-{engine}-{_safe(engine_version)}-fr{_safe(__version__)}"
           f"-g{GRAPH_FORMAT}")
    return GraphEntry((root or cache_root()) / f"{key}.onnx", key)


@contextlib.contextmanager
def graph_lock(entry: GraphEntry) -> Iterator[None]:
    """Hold the entry's build lock (other processes wait); a no-op where flock does not exist."""
    entry.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: the atomic rename still leaves one whole file
        yield
        return
    entry.lock_path.parent.mkdir(exist_ok=True)
    with open(entry.lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
