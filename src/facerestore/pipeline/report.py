"""A machine-readable record of a run: what went in, what came out, and with which models.

``--report FILE.json`` writes it; :func:`build_report` gives the same dict to Python callers.
The layout is documented in ``docs/report-schema.json`` (JSON Schema) and tested against it:
per run the options, package versions and the sha256 of every weight file used; per input its
size, time, notes, outputs; per face its box, detector score, five landmarks, identity score,
blend weight used and output files.

Hashing a 350 MB checkpoint takes seconds, so hashes are cached on disk by (path, mtime, size)
next to the downloaded weights, and a file is hashed again only when it changed.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io.atomic import atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from .results import BatchSummary, FileResult
    from .options import RestoreOptions

__all__ = ["SCHEMA_ID", "build_report", "face_entry", "write_report", "file_sha256", "versions"]

SCHEMA_ID = "facerestore-report/1"
_HASH_CACHE_FILE = "file-hashes.json"
_memory: dict[str, str] = {}
_lock = threading.Lock()


def _hash_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_mtime_ns}|{st.st_size}"


def _cache_path() -> Path:
    from ..models import zoo

    return zoo.cache_dir() / _HASH_CACHE_FILE


def _read_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}


def file_sha256(path: str | Path, *, cache: bool = True) -> str:
    """The sha256 of a file, hashed once per (path, mtime, size): remembered in memory and in
    ``<model cache>/file-hashes.json``. An unwritable cache folder only costs the caching."""
    from ..models import zoo

    path = Path(path)
    key = _hash_key(path)
    if not cache:
        return zoo.sha256_of(path)
    with _lock:
        if key in _memory:
            return _memory[key]
        cache_file = _cache_path()
        stored = _read_cache(cache_file)
        digest = stored.get(key)
        if digest is None:
            digest = zoo.sha256_of(path)
            stored = {k: v for k, v in stored.items() if not k.startswith(f"{path.resolve()}|")}
            stored[key] = digest
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(cache_file, json.dumps(stored, indent=1, sort_keys=True))
            except OSError:
                pass
        _memory[key] = digest
        return digest


def versions() -> dict[str, str]:
    """Versions of what produced the pixels."""
    import cv2
    import numpy
    import torch

    from .. import __version__

    return {"facerestore": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "opencv": cv2.__version__}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return _jsonable(value.item())
    return f"<{type(value).__name__}>"  # a module or object passed in: named, not serialised


def _models(model_files: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = {}
    for role, source in model_files.items():
        entry: dict[str, Any] = {"path": None, "sha256": None}
        if source and source != "module" and Path(source).is_file():
            entry = {"path": str(Path(source).resolve()), "sha256": file_sha256(source)}
        out[role] = entry
    return out


def face_entry(record: Any) -> dict[str, Any]:
    """One face of the report (a ``FaceRecord``); the web API's ``?output=json`` gives the same."""
    return {
        "index": record.index,
        "box": _jsonable(record.box),
        "score": _jsonable(record.score),
        "landmarks": _jsonable(record.landmarks),
        "identity": _jsonable(record.identity),
        "weight": record.weight,
        "color_matched": bool(record.color_matched),
        "notes": list(record.notes),
        "outputs": {k: str(v) for k, v in record.outputs.items()},
    }


def _file(result: "FileResult") -> dict[str, Any]:
    return {
        "path": str(result.path),
        "size_bytes": result.size_bytes,
        "width": result.width,
        "height": result.height,
        "seconds": round(result.seconds, 4),
        "ok": result.ok,
        "error": result.error,
        "faces": [face_entry(r) for r in result.face_records],
        "face_count": result.faces,
        "notes": list(result.notes),
        "outputs": [str(p) for p in result.outputs],
    }


def build_report(summary: "BatchSummary", options: "RestoreOptions",
                 model_files: dict[str, str] | None = None) -> dict[str, Any]:
    """The report of a finished (or interrupted) :func:`~facerestore.pipeline.batch.run_batch`.

    ``model_files`` maps a role (model, detector, parser, identity, bg_upsampler) to the file it
    was loaded from; by default the summary's own (``summary.model_files``).
    """
    files = model_files if model_files is not None else getattr(summary, "model_files", {})
    return {
        "schema": SCHEMA_ID,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run": {
            "options": {f.name: _jsonable(getattr(options, f.name)) for f in dataclasses.fields(options)},
            "versions": versions(),
            "models": _models(files),
            "files": summary.files,
            "succeeded": summary.succeeded,
            "faces": summary.faces,
            "seconds": round(summary.seconds, 4),
            "interrupted": summary.interrupted,
            "notes": list(getattr(summary, "notes", [])),
        },
        "files": [_file(r) for r in summary.results],
    }


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write the report as JSON, atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return path
