"""The Ray Data stage: one :class:`~facerestore.pipeline.restorer.Restorer` per actor, the batch's
per-file work on each row, errors per row.

>>> ds = ray.data.read_binary_files("s3://bucket/photos", include_paths=True)
>>> ds = ds.map_batches(FaceRestore, fn_constructor_kwargs={"options": RestoreOptions(device="cuda")},
...                     batch_size=8, num_gpus=1, compute=ray.data.ActorPoolStrategy(size=4))
>>> ds.write_parquet("s3://bucket/restored")  # or FaceRestore(..., output="s3://bucket/out") writes files

Nothing here imports Ray: the class is a plain callable, so it can be tested, and used, without a cluster.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from facerestore.pipeline.options import RestoreOptions
from facerestore.ray.storage import Location, is_uri, read_bytes

__all__ = ["FaceRestore", "RowResult", "OUTPUT_COLUMNS"]

# The columns of the batches FaceRestore returns, in order.
OUTPUT_COLUMNS = ("path", "status", "error", "faces", "face_records", "notes", "output_names",
                  "output_bytes", "width", "height", "seconds")


@dataclass
class RowResult:
    """What became of one input row.

    ``status``: ``restored``; ``failed`` (``error`` says why, one line naming the file); or
    ``complete`` (its results were already in the output location, nothing was redone: a
    resumed run, or a batch retried after its worker died). ``output_names`` are the official
    layout's relative names (``cropped_faces/a_00.png``, ..., ``restored_imgs/a.jpg`` last) and
    ``output_bytes`` their encoded files; empty once the stage has written them itself.
    """

    path: str
    status: str = "restored"
    error: str | None = None
    faces: int = 0
    face_records: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    output_bytes: list[bytes] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    seconds: float = 0.0


def _jsonable(value: Any) -> Any:
    if isinstance(value, (Path, PurePosixPath)):
        return value.as_posix()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _failure(name: str, exc: BaseException) -> str:
    """One line naming the file: a bad input or output says why, anything else its type."""
    from facerestore.io.images import ImageReadError, ImageWriteError, OutputTooLargeError

    if isinstance(exc, (ImageReadError, ImageWriteError, OutputTooLargeError)):
        return str(exc)
    return f"{name}: {type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _as_local_file(name: str, data: bytes | None, folder: Path) -> Iterator[Path]:
    """The input as a file the project's reader opens: a local path as it is; bytes in a file
    of the same base name (its extension chooses the output's kind, as in the CLI) in ``folder``."""
    if data is None:
        yield Path(name)
        return
    own = folder / f"{time.monotonic_ns()}"
    own.mkdir()
    try:
        local = own / (PurePosixPath(name).name or "image")
        local.write_bytes(data)
        yield local
    finally:
        shutil.rmtree(own, ignore_errors=True)


def _restore_one(restorer, options: RestoreOptions, name: str, data: bytes | None, stem: str,
                 scratch: Path) -> RowResult:
    """One photo through the CLI batch's own per-file steps (pipeline/batch.py: ``read_file``
    checks and decodes with the project's reader and limits, ``compute_file`` restores and
    composes back to the input's kind, ``encode_image`` encodes), its outputs returned as bytes
    under their official names. Every exception becomes the row's error.

    The only place this module touches the batch's internals: swap them here when they move.
    """
    from facerestore.io.images import encode_image
    from facerestore.pipeline.batch import compute_file, read_file

    start = time.perf_counter()
    with _as_local_file(name, data, scratch) as local:
        try:
            read = read_file(local, options)
            result, images, _ = compute_file(restorer, read, Path(), options, stem=stem)
            names = [target.as_posix() for target, _ in images]
            encoded = [encode_image(image, target.suffix, name=target) for target, image in images]
        except Exception as exc:
            error = _failure(name, exc).replace(str(local), name)
            return RowResult(name, status="failed", error=error, seconds=time.perf_counter() - start)
    records = [json.loads(json.dumps(dataclasses.asdict(r), default=_jsonable)) for r in result.face_records]
    notes = [n.replace(str(local), name) for n in result.notes]
    return RowResult(name, faces=result.faces, face_records=records, notes=notes, output_names=names,
                     output_bytes=encoded, width=result.width, height=result.height,
                     seconds=time.perf_counter() - start)


def _columns(batch: Any) -> dict[str, list]:
    """A Ray Data batch (pyarrow Table, pandas DataFrame or dict of numpy arrays) as lists."""
    if hasattr(batch, "to_pydict"):
        return batch.to_pydict()
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):
        return {c: list(batch[c]) for c in batch.columns}
    return {k: list(v) for k, v in batch.items()}


def _scratch_folder() -> Path:
    """Where bytes become a file for the reader: memory (/dev/shm) where there is one."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="facerestore-ray-", dir=base))


class FaceRestore:
    """A callable class for ``Dataset.map_batches``: restores the faces of each row's image.

    Rows carry ``path`` (a local path or URI; it names the results and the errors) and
    optionally ``bytes`` (the file's content, as ``read_binary_files(..., include_paths=True)``
    gives it; without it the stage reads ``path`` itself) and ``stem`` (the results' base name,
    default the file's stem). Each returned row has :data:`OUTPUT_COLUMNS`: see :class:`RowResult`
    (``face_records`` as JSON text, ``output_names``/``output_bytes`` as parallel lists).

    ``options``: the run's :class:`RestoreOptions` (``overrides`` replace fields of it). The
    models are loaded once, when Ray builds the actor, exactly as the CLI loads them.
    ``output``: a folder or URI to write the official layout to, atomically per photo; then rows
    whose results are already complete there are not redone (``status`` ``complete``), and the
    returned rows hold names, not bytes.
    ``batch_attempts``: what bounds the tries at a batch whose worker keeps dying (the driver's
    :class:`~facerestore.ray.driver.BatchAttempts`): a batch past its tries is not restored
    again, its photos are ``complete`` when an earlier try wrote them, else ``failed`` (lost).
    """

    def __init__(self, options: RestoreOptions | None = None, *, output: str | os.PathLike | Location | None = None,
                 batch_attempts: Any = None, **overrides: Any) -> None:
        from facerestore.pipeline.restorer import Restorer

        options = (options or RestoreOptions()).replace(**overrides).validate()
        self.options = options
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.restorer = Restorer(options)
        self.notes = [str(w.message) for w in caught]  # model choices, as the CLI prints them
        self.output = output if output is None or isinstance(output, Location) else Location(output)
        self.batch_attempts = batch_attempts
        self._scratch = _scratch_folder()

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_scratch", ""), ignore_errors=True)

    def __call__(self, batch: Any):
        import pyarrow as pa

        columns = _columns(batch)
        paths = [str(p) for p in columns["path"]]
        contents = columns.get("bytes") or [None] * len(paths)
        stems = columns.get("stem") or [PurePosixPath(p).stem for p in paths]
        attempts = self.batch_attempts
        if attempts is not None and not attempts.start(paths):  # its workers died on every try
            rows = [self.lost_row(p, s, attempts.lost_error(p)) for p, s in zip(paths, stems, strict=True)]
        else:
            rows = [self.restore_row(p, d, s) for p, d, s in zip(paths, contents, stems, strict=True)]
        if attempts is not None:
            attempts.finish(paths)
        return pa.table({
            "path": pa.array([r.path for r in rows], pa.string()),
            "status": pa.array([r.status for r in rows], pa.string()),
            "error": pa.array([r.error for r in rows], pa.string()),
            "faces": pa.array([r.faces for r in rows], pa.int32()),
            "face_records": pa.array([json.dumps(r.face_records) for r in rows], pa.string()),
            "notes": pa.array([r.notes for r in rows], pa.list_(pa.string())),
            "output_names": pa.array([r.output_names for r in rows], pa.list_(pa.string())),
            "output_bytes": pa.array([r.output_bytes for r in rows], pa.list_(pa.binary())),
            "width": pa.array([r.width for r in rows], pa.int32()),
            "height": pa.array([r.height for r in rows], pa.int32()),
            "seconds": pa.array([r.seconds for r in rows], pa.float64()),
        })

    def restore_row(self, path: str, data: bytes | None = None, stem: str | None = None) -> RowResult:
        """One row: skipped when complete in ``output``, else restored (and written there)."""
        stem = stem or PurePosixPath(path).stem
        if self.output is not None and self.is_complete(path, stem):
            return RowResult(path, status="complete")
        if data is None and is_uri(path):
            try:
                data = read_bytes(path)
            except Exception as exc:
                return RowResult(path, status="failed", error=f"{path}: cannot read it ({exc})")
        row = _restore_one(self.restorer, self.options, path, data, stem, self._scratch)
        if self.output is not None and row.error is None:
            try:
                self.output.write_group(zip(row.output_names, row.output_bytes, strict=True))
            except Exception as exc:
                return RowResult(path, status="failed", error=f"{path}: cannot write its results to "
                                                                  f"{self.output} ({exc})", seconds=row.seconds)
            row.output_bytes = []
        return row

    def lost_row(self, path: str, stem: str | None, error: str) -> RowResult:
        """A photo of a batch given up: ``complete`` when an earlier try wrote its results."""
        if self.output is not None and self.is_complete(path, stem or PurePosixPath(path).stem):
            return RowResult(path, status="complete")
        return RowResult(path, status="failed", error=error)

    def is_complete(self, path: str, stem: str) -> bool:
        from facerestore.pipeline.shard import completion_markers

        assert self.output is not None
        return any(self.output.exists(m) for m in completion_markers(PurePosixPath(path), self.options, stem))
