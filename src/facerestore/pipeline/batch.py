"""Restore files into the official output layout, in input order (the next file is decoded and
the previous one written in threads while one is restored; on GPUs consecutive files share batches).

One bad file never stops the batch: it is reported, leaves no output behind, and the run goes
on. Nothing that was complete before a run is gone after it: the outputs of a photo are staged
and renamed into place together only when all are written, so a failure or Ctrl-C part-way
leaves an earlier run's results as they were. Inputs are never written to, and an input that
sits where an output would go is refused before any work.

Nothing here prints: what happens is reported through the callbacks and the returned
:class:`BatchSummary`, which front-ends (CLI, web service, video) render as they like.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io.atomic import StagedFiles, remove_stale_temporaries
from ..io.images import (
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    OutputTooLargeError,
    check_output_pixels,
    choose_output_ext,
    encode_image,
    from_pipeline,
    holds_alpha,
    peek_size,
    read_image,
    to_pipeline,
)
from .options import OptionsError, RestoreOptions
from .results import BatchSummary, FileResult

OUTPUT_FOLDERS = ("cropped_faces", "restored_faces", "cmp", "restored_imgs")
# A temporary file this old in an output folder is a killed writer's: a live one exists only for
# the seconds one photo's group takes to write, even when other shards write to the same folder.
STALE_TEMPORARY_AGE_S = 600.0

NoteCallback = Callable[[str], None]


# --------------------------------------------------------------------------- planning


def output_stems(files: Iterable[Path], on_note: NoteCallback | None = None) -> dict[Path, str]:
    """Output names use the input's stem, as the official; photos that share one (a.jpg, a.png)
    get their extension added so that neither overwrites the other's results."""
    files = list(files)
    counts: dict[str, int] = {}
    for path in files:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    stems = {}
    for path in files:
        shared = counts[path.stem] > 1
        stems[path] = f"{path.stem}_{path.suffix.lstrip('.').lower()}" if shared else path.stem
        if shared and on_note is not None:
            on_note(f"{path.name} shares its name with another input; its results are named {stems[path]}*")
    return stems


def check_no_clash(files: Iterable[Path], out_dir: Path) -> None:
    """Refuse, before any work, inputs that live in an output folder of this run: restoring
    ``-i OUT/restored_imgs -o OUT`` would write a result over its own input."""
    out_folders = {(out_dir / name).resolve() for name in OUTPUT_FOLDERS}
    for path in files:
        if path.resolve().parent in out_folders:
            raise OptionsError("-o/--output", f"the input {path} is in {path.resolve().parent}, where this "
                                              f"run writes its results; choose another output folder")


def output_paths(stem: str, n_faces: int, options: RestoreOptions, ext: str, out_dir: Path,
                 ) -> dict[str, list[Path]]:
    """The official names: ``{stem}_{idx:02d}[_{suffix}].png`` per face, ``{stem}[_{suffix}].{ext}``."""
    tail = f"_{options.suffix}" if options.suffix else ""
    faces = [f"{stem}_{i:02d}" for i in range(n_faces)]
    return {
        "cropped_faces": [out_dir / "cropped_faces" / f"{f}.png" for f in faces],
        "restored_faces": [out_dir / "restored_faces" / f"{f}{tail}.png" for f in faces],
        "cmp": [out_dir / "cmp" / f"{f}.png" for f in faces],
        "restored_imgs": [] if options.aligned else [out_dir / "restored_imgs" / f"{stem}{tail}{ext}"],
    }


# --------------------------------------------------------------------------- one file


def remove_stale_temporaries_in(out_dir: Path, older_than_s: float = STALE_TEMPORARY_AGE_S) -> list[Path]:
    """Remove the hidden temporary files (``.NAME.HEX.tmp``, :mod:`facerestore.io.atomic`'s
    names only) that a killed writer left in ``out_dir`` and its layout's folders, those older
    than ``older_than_s`` seconds; returns what was removed. Other files, hidden or not, stay."""
    return remove_stale_temporaries([out_dir, *(out_dir / name for name in OUTPUT_FOLDERS)], older_than_s)


def check_output_size(path: Path, options: RestoreOptions) -> None:
    """Refuse a result that would be too large to build, from the header, before decoding."""
    if options.aligned:
        return
    width, height = peek_size(path)
    check_output_pixels(width, height, options.upscale, options.max_output_pixels, path=path)


def restore_file(restorer, path: Path, out_dir: Path, options: RestoreOptions, *, stem: str | None = None,
                 protected: Collection[Path] = frozenset()) -> FileResult:
    """Restore one file and write its outputs together. Raises on failure; then nothing of this
    file was written and earlier results under the same names are untouched."""
    read = read_file(path, options)
    return write_outputs(*compute_file(restorer, read, out_dir, options, stem=stem), out_dir, protected)


@dataclass
class _Read:
    """A decoded input, ready for the networks (what :func:`read_file` gives)."""

    path: Path
    loaded: LoadedImage
    ext: str
    result: FileResult
    seconds: float


def read_file(path: Path, options: RestoreOptions) -> _Read:
    """Check and decode one input (the part of :func:`restore_file` that can run ahead in a thread)."""
    start = time.perf_counter()
    result = FileResult(path)
    check_output_size(path, options)
    loaded = read_image(path, max_pixels=int(options.max_pixels))
    result.notes.extend(loaded.notes)
    ext = choose_output_ext(loaded, None if options.ext == "auto" else options.ext)
    if loaded.alpha is not None and not holds_alpha(ext):
        # The user asked for a format without transparency (--ext jpg): keep the picture, say so.
        result.notes.append(f"{path.name}: {ext} cannot store transparency, the alpha channel is dropped")
        loaded = dataclasses.replace(loaded, alpha=None)
    result.width, result.height = loaded.width, loaded.height
    try:
        result.size_bytes = path.stat().st_size
    except OSError:
        pass
    return _Read(path, loaded, ext, result, time.perf_counter() - start)


def _restore_args(options: RestoreOptions) -> dict:
    return dict(has_aligned=options.aligned, only_center_face=options.only_center_face, paste_back=True,
                weight=options.weight)


def compute_file(restorer, read: _Read, out_dir: Path, options: RestoreOptions, *, stem: str | None = None,
                 restored_all=None) -> tuple[FileResult, list[tuple[Path, np.ndarray]], float]:
    """Restore a decoded input: its result record, the images to write, and the seconds spent.
    ``restored_all``: the input's :class:`RestoreResult` when it was already restored (with
    other files' faces, by ``restore_many``)."""
    start = time.perf_counter()
    path, loaded, ext, result = read.path, read.loaded, read.ext, read.result
    args = _restore_args(options)
    if restored_all is not None or hasattr(restorer, "restore"):
        if restored_all is None:
            restored_all = restorer.restore(to_pipeline(loaded), **args)
        cropped, restored, restored_img = restored_all.cropped, restored_all.restored, restored_all.image
        result.face_records = restored_all.faces
        result.notes.extend(f"{path.name}: {message}" for message in restored_all.notes)
    else:  # a duck-typed restorer with the official enhance() only
        cropped, restored, restored_img = restorer.enhance(to_pipeline(loaded), **args)
    targets = output_paths(stem or path.stem, len(cropped), options, ext, out_dir)
    if options.save_faces:
        for record in result.face_records:
            record.outputs = {kind: targets[kind][record.index] for kind in ("cropped_faces", "restored_faces", "cmp")}
    images: list[tuple[Path, np.ndarray]] = []
    if options.save_faces:
        for i, (crop, face) in enumerate(zip(cropped, restored, strict=True)):
            images.append((targets["cropped_faces"][i], crop))
            images.append((targets["restored_faces"][i], face))
            images.append((targets["cmp"][i], np.concatenate([crop, face], axis=1)))
    if restored_img is not None:
        final = from_pipeline(restored_img, loaded, keep_grey=restorer.keep_grey)
        images.append((targets["restored_imgs"][0], final))
    result.faces = len(cropped)
    return result, images, read.seconds + time.perf_counter() - start


def write_outputs(result: FileResult, images: list[tuple[Path, np.ndarray]], seconds: float, out_dir: Path,
                  protected: Collection[Path] = frozenset()) -> FileResult:
    """Encode and write a file's outputs together (staged, then renamed into place at once)."""
    start = time.perf_counter()
    for target, _ in images:
        if target.resolve() in protected:
            raise ImageWriteError(target, "would overwrite an input file; choose another output folder")
    with StagedFiles() as staged:
        for target, image in images:
            try:
                staged.add(target, encode_image(image, target.suffix, name=target))
            except OSError as exc:
                raise ImageWriteError(target, f"cannot write it ({exc.strerror or exc})") from exc
        try:
            result.outputs = staged.commit()
        except OSError as exc:
            raise ImageWriteError(out_dir, f"cannot write the results ({exc.strerror or exc})") from exc
    result.seconds = seconds + time.perf_counter() - start
    return result


_MAX_FILES_PER_GROUP = 8  # decoded photos held at once when their faces are batched together


def _files_per_group(restorer) -> int:
    """Files restored together: 1 unless the restorer batches faces (a GPU's batch size)."""
    batch_size = getattr(restorer, "batch_size", 1)
    if not hasattr(restorer, "restore_many") or not isinstance(batch_size, int) or batch_size <= 1:
        return 1
    return max(1, min(_MAX_FILES_PER_GROUP, batch_size // 2))


def _restore_together(restorer, reads: list[_Read], options: RestoreOptions) -> dict[int, tuple[object, float]]:
    """``{id(read): (RestoreResult, seconds)}`` for files whose faces went through the network
    together; empty when there is one file, or when that failed (then each file is restored
    on its own, so that a bad one is named and the others succeed)."""
    if len(reads) < 2:
        return {}
    start = time.perf_counter()
    try:
        results = restorer.restore_many([to_pipeline(r.loaded) for r in reads], **_restore_args(options))
    except Exception:
        return {}
    share = (time.perf_counter() - start) / len(reads)
    return {id(r): (res, share) for r, res in zip(reads, results, strict=True)}


def _failed(path: Path, exc: BaseException) -> FileResult:
    """The result of a file that failed: a bad input or output says why; anything else keeps
    the exception for a traceback. One bad file must not stop the batch."""
    if isinstance(exc, (ImageReadError, ImageWriteError, OutputTooLargeError)):
        return FileResult(path, error=str(exc))
    return FileResult(path, error=f"{path}: {type(exc).__name__}: {exc}", exception=exc)


# --------------------------------------------------------------------------- the batch


class _BatchRun:
    """The loop of one :func:`run_batch`, in three steps that overlap: *read ahead* decodes the
    next files in a thread, *restore* runs the networks on one file (or a group of files whose
    faces share batches, on GPUs), and *write behind* encodes and writes the previous file's
    outputs in a thread while the next one is restored (OpenCV and numpy release the GIL).
    Results are recorded in input order; each file's outputs are still staged and committed
    together by :func:`write_outputs`. Without ``overlap`` every step runs in turn, in one thread.
    """

    def __init__(self, files: list[Path], out_dir: Path, options: RestoreOptions, restorer,
                 summary: BatchSummary, *, stems: dict[Path, str], protected: Collection[Path], overlap: bool,
                 on_note: NoteCallback | None, on_file: Callable[[FileResult], None] | None) -> None:
        self.files, self.out_dir, self.options, self.restorer = files, out_dir, options, restorer
        self.summary, self.stems, self.protected, self.overlap = summary, stems, protected, overlap
        self.on_note, self.on_file = on_note, on_file
        self.group = _files_per_group(restorer)
        self.pool: ThreadPoolExecutor | None = None
        self.reads: dict[int, Future] = {}  # input index -> its decode, started ahead
        self.writing: tuple[Path, Future] | None = None  # the previous file's write, still going

    def _running_pool(self) -> ThreadPoolExecutor:
        if self.pool is None:
            raise RuntimeError("the batch's thread pool exists only while run() runs")
        return self.pool

    def run(self, progress: Callable[[Iterable[Path]], Iterable[Path]] | None) -> None:
        """Every file, in order; Ctrl-C stops after the current file (summary.interrupted)."""
        with ThreadPoolExecutor(max_workers=2 if self.overlap else 1, thread_name_prefix="facerestore-io") as pool:
            self.pool = pool
            self.read_ahead(0, self.group + 1)
            items: list[tuple[int, Path]] = []
            try:
                for i, path in enumerate(progress(self.files) if progress else self.files):
                    items.append((i, path))
                    if len(items) < self.group and i + 1 < len(self.files):
                        continue
                    self.read_ahead(i + 1, i + 1 + self.group)
                    group, items = items, []
                    self.restore(group)
                if items:
                    self.restore(items)
            except KeyboardInterrupt:
                self.summary.interrupted = True
                for future in self.reads.values():
                    future.cancel()
            finally:
                self.finish_write()  # a started write completes (all of a file's outputs or none)

    def record(self, result: FileResult) -> None:
        if self.on_note is not None:
            for message in result.notes:
                self.on_note(message)
        self.summary.results.append(result)
        if self.on_file is not None:
            self.on_file(result)

    # read ahead

    def read_ahead(self, low: int, high: int) -> None:
        """Start decoding files ``low`` to ``high - 1`` in the pool (with ``overlap``)."""
        if not self.overlap:
            return
        for j in range(low, min(high, len(self.files))):
            if j not in self.reads:
                self.reads[j] = self._running_pool().submit(read_file, self.files[j], self.options)

    def _read(self, i: int, path: Path) -> _Read | BaseException:
        """File ``i``'s decode: the one read ahead, or read now (no overlap, or a progress
        wrapper that reordered the files); a failure is returned, to be recorded in order."""
        future = self.reads.pop(i, None)
        try:
            if future is not None and path == self.files[i]:
                return future.result()
            return read_file(path, self.options)
        except Exception as exc:
            return exc

    # restore

    def restore(self, items: list[tuple[int, Path]]) -> None:
        """Restore a group of files (their faces batched together when there are several) and
        hand each one's outputs to the write-behind step."""
        loaded = [(path, self._read(i, path)) for i, path in items]
        together = _restore_together(self.restorer, [r for _, r in loaded if isinstance(r, _Read)], self.options)
        for path, read in loaded:
            try:
                if isinstance(read, BaseException):
                    raise read
                done = together.get(id(read))
                result, images, seconds = compute_file(self.restorer, read, self.out_dir, self.options,
                                                       stem=self.stems[path], restored_all=done[0] if done else None)
                seconds += done[1] if done else 0.0
            except Exception as exc:
                self.finish_write()
                self.record(_failed(path, exc))
                continue
            self.write_behind(path, result, images, seconds)

    # write behind

    def write_behind(self, path: Path, result: FileResult, images: list[tuple[Path, np.ndarray]],
                     seconds: float) -> None:
        """Record the previous file, then start writing this one's outputs (at once without overlap)."""
        self.finish_write()
        writing = self._running_pool().submit(write_outputs, result, images, seconds, self.out_dir, self.protected)
        self.writing = (path, writing)
        if not self.overlap:
            self.finish_write()

    def finish_write(self) -> None:
        """Wait for the write under way, if any, and record its file (written, or why not)."""
        if self.writing is None:
            return
        path, future = self.writing
        self.writing = None
        try:
            self.record(future.result())
        except Exception as exc:
            self.record(_failed(path, exc))


def run_batch(files: list[Path], out_dir: Path, options: RestoreOptions, *, restorer=None,
              on_note: NoteCallback | None = None, on_file: Callable[[FileResult], None] | None = None,
              progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
              stems: dict[Path, str] | None = None, overlap: bool = True) -> BatchSummary:
    """Restore ``files`` into ``out_dir``; returns what happened, file by file.

    ``options`` is validated and the output folder and input/output clashes are checked before
    any model is loaded. ``restorer`` reuses a loaded :class:`~facerestore.Restorer` (a web
    worker); by default one is built from ``options``, and its notes go to ``on_note``.
    ``progress`` wraps the file iterable (a progress bar). ``stems`` names each file's results
    (default :func:`output_stems`; a sharded run passes the names computed over all inputs).
    Ctrl-C stops after the current file's outputs are either all written or not at all; the
    summary says so (``interrupted``).
    ``overlap`` decodes the next file and writes the previous one in threads while a file is
    restored (the outputs are the same either way; see :class:`_BatchRun`).
    """
    from .options import check_output_folder
    from .restorer import Restorer

    options.validate()
    summary = BatchSummary(files=len(files))

    def note(message: str) -> None:
        summary.notes.append(message)
        if on_note is not None:
            on_note(message)

    check_no_clash(files, out_dir)
    check_output_folder(out_dir)
    stale = remove_stale_temporaries_in(out_dir)
    if stale:
        note(f"removed {len(stale)} temporary file(s) that an interrupted run left in {out_dir}")
    protected = {p.resolve() for p in files}
    stems = stems if stems is not None else output_stems(files, note)
    if not files:
        return summary
    start = time.perf_counter()
    if restorer is None:
        restorer = Restorer(options)
        for message in restorer.notes:
            note(message)
    summary.model_files = dict(getattr(restorer, "model_files", {}))
    _BatchRun(files, out_dir, options, restorer, summary, stems=stems, protected=protected, overlap=overlap,
              on_note=on_note, on_file=on_file).run(progress)
    summary.seconds = time.perf_counter() - start
    if options.report is not None:
        from .report import build_report, write_report

        try:
            summary.report_path = write_report(options.report, build_report(summary, options))
        except OSError as exc:  # the images are written; say the record is not, and why
            note(f"the report could not be written to {options.report}: {exc.strerror or exc}")
    return summary
