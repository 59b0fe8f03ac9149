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
from dataclasses import dataclass, field
from pathlib import Path
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable

import numpy as np

from ..io.atomic import StagedFiles
from ..io.images import (
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    OutputTooLargeError,
    check_output_pixels,
    choose_output_ext,
    compose_output,
    encode_image,
    holds_alpha,
    peek_size,
    read_image,
)
from .options import OptionsError, RestoreOptions

OUTPUT_FOLDERS = ("cropped_faces", "restored_faces", "cmp", "restored_imgs")

NoteCallback = Callable[[str], None]


@dataclass
class FileResult:
    """What became of one input file."""

    path: Path
    faces: int = 0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # An unexpected failure (not a bad input file): kept so a front-end can show its traceback.
    exception: BaseException | None = field(default=None, repr=False)
    # What the report records: the input's size, and one record per restored face (box, score,
    # landmarks, identity score, weight used, output paths), see pipeline/report.py.
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    face_records: list = field(default_factory=list)  # list[restorer.FaceRecord]

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BatchSummary:
    files: int = 0
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # run-wide notes (models chosen, scores unavailable)
    model_files: dict[str, str] = field(default_factory=dict)  # role -> weights file, for the report
    report_path: Path | None = None  # where the JSON report was written, if asked (options.report)

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def faces(self) -> int:
        return sum(r.faces for r in self.results)

    @property
    def failures(self) -> list[tuple[Path, str]]:
        return [(r.path, r.error) for r in self.results if r.error is not None]

    @property
    def no_face(self) -> list[Path]:
        return [r.path for r in self.results if r.ok and r.faces == 0]

    def report(self) -> str:
        done = len(self.results)
        head = (f"interrupted after {done} of {self.files} files: " if self.interrupted else "")
        lines = [f"{head}{self.succeeded}/{self.files} files restored, {self.faces} faces, "
                 f"{len(self.failures)} failed, {self.seconds:.1f} s"]
        if self.no_face:
            lines.append(f"no face found in {len(self.no_face)}: " + ", ".join(p.name for p in self.no_face))
        scored = [(rec.identity, r.path, rec.index) for r in self.results for rec in r.face_records
                  if rec.identity is not None]
        if scored:
            low, path, index = min(scored)
            lines.append(f"identity score (ArcFace cosine, input vs restored face): mean "
                         f"{sum(s for s, _, _ in scored) / len(scored):.3f}, lowest {low:.3f} "
                         f"({path.name} face {index})")
        return "\n".join(lines)


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


def _as_cv2_array(loaded: LoadedImage) -> np.ndarray:
    """The image as ``cv2.imread(..., IMREAD_UNCHANGED)`` would give it (BGR or BGRA, 8/16-bit)."""
    if loaded.alpha is None:
        return loaded.pixels
    return np.dstack([loaded.pixels, loaded.alpha])


def check_output_size(path: Path, options: RestoreOptions) -> None:
    """Refuse a result that would be too large to build, from the header, before decoding."""
    if options.aligned:
        return
    width, height = peek_size(path)
    check_output_pixels(width, height, options.upscale, options.max_output_pixels, path=path)


def restore_file(restorer, path: Path, out_dir: Path, options: RestoreOptions, *, stem: str | None = None,
                 protected: set[Path] = frozenset()) -> FileResult:
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
            restored_all = restorer.restore(_as_cv2_array(loaded), **args)
        cropped, restored, restored_img = restored_all.cropped, restored_all.restored, restored_all.image
        result.face_records = restored_all.faces
        result.notes.extend(f"{path.name}: {message}" for message in restored_all.notes)
    else:  # a duck-typed restorer with the official enhance() only
        cropped, restored, restored_img = restorer.enhance(_as_cv2_array(loaded), **args)
    targets = output_paths(stem or path.stem, len(cropped), options, ext, out_dir)
    if options.save_faces:
        for record in result.face_records:
            record.outputs = {kind: targets[kind][record.index] for kind in ("cropped_faces", "restored_faces", "cmp")}
    images: list[tuple[Path, np.ndarray]] = []
    if options.save_faces:
        for i, (crop, face) in enumerate(zip(cropped, restored)):
            images.append((targets["cropped_faces"][i], crop))
            images.append((targets["restored_faces"][i], face))
            images.append((targets["cmp"][i], np.concatenate([crop, face], axis=1)))
    if restored_img is not None:
        # enhance returns the input's layout: BGR, or BGRA when the input kept its alpha.
        alpha = restored_img[:, :, 3] if restored_img.ndim == 3 and restored_img.shape[2] == 4 else None
        colour = restored_img if restored_img.ndim == 2 else restored_img[:, :, :3]
        if colour.ndim == 2:
            colour = np.repeat(colour[:, :, None], 3, axis=2)
        final = compose_output(colour, loaded, alpha_upscaled=alpha, keep_gray=restorer.keep_grey)
        images.append((targets["restored_imgs"][0], final))
    result.faces = len(cropped)
    return result, images, read.seconds + time.perf_counter() - start


def write_outputs(result: FileResult, images: list[tuple[Path, np.ndarray]], seconds: float, out_dir: Path,
                  protected: set[Path] = frozenset()) -> FileResult:
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
        results = restorer.restore_many([_as_cv2_array(r.loaded) for r in reads], **_restore_args(options))
    except Exception:
        return {}
    share = (time.perf_counter() - start) / len(reads)
    return {id(r): (res, share) for r, res in zip(reads, results)}


def _failed(path: Path, exc: BaseException) -> FileResult:
    """The result of a file that failed: a bad input or output says why; anything else keeps
    the exception for a traceback. One bad file must not stop the batch."""
    if isinstance(exc, (ImageReadError, ImageWriteError, OutputTooLargeError)):
        return FileResult(path, error=str(exc))
    return FileResult(path, error=f"{path}: {type(exc).__name__}: {exc}", exception=exc)


# --------------------------------------------------------------------------- the batch


def run_batch(files: list[Path], out_dir: Path, options: RestoreOptions, *, restorer=None,
              on_note: NoteCallback | None = None, on_file: Callable[[FileResult], None] | None = None,
              progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
              stems: dict[Path, str] | None = None, overlap: bool = True) -> BatchSummary:
    """Restore ``files`` into ``out_dir``; returns what happened, file by file.

    ``options`` is validated and the output folder and input/output clashes are checked before
    any model is loaded. ``restorer`` reuses a loaded :class:`~facerestore.Restorer` (a web
    worker); by default one is built from ``options``, and its notes go to ``on_note``.
    ``progress`` wraps the file iterable (a progress bar). ``stems`` names each file's results
    (default :func:`output_stems`; a sharded run passes the names computed over all inputs). Ctrl-C stops after the current file's
    outputs are either all written or not at all; the summary says so (``interrupted``).
    ``overlap`` decodes the next file and writes the previous one in threads while a file is
    restored (the outputs are the same either way).
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

    def record(result: FileResult) -> None:
        for message in result.notes:
            if on_note is not None:
                on_note(message)
        summary.results.append(result)
        if on_file is not None:
            on_file(result)

    # Decoding the next files and encoding/writing the previous one run in two threads while
    # this one computes (OpenCV and numpy release the GIL). Results are recorded in input order,
    # and each file's outputs are still staged and committed together by write_outputs. With a
    # batch size above 1 (GPUs) consecutive files are restored together, their faces batched.
    group = _files_per_group(restorer)
    with ThreadPoolExecutor(max_workers=2 if overlap else 1, thread_name_prefix="facerestore-io") as pool:
        reads: dict[int, Future] = {}

        def prefetch(low: int, high: int) -> None:
            for j in range(low, min(high, len(files))):
                if overlap and j not in reads:
                    reads[j] = pool.submit(read_file, files[j], options)

        writing: tuple[Path, Future] | None = None

        def finish_write() -> None:
            nonlocal writing
            if writing is not None:
                path, future = writing
                writing = None
                try:
                    record(future.result())
                except Exception as exc:
                    record(_failed(path, exc))

        def process(items: list[tuple[int, Path]]) -> None:
            nonlocal writing
            loaded: list[tuple[Path, _Read | BaseException]] = []
            for i, path in items:
                future = reads.pop(i, None)
                try:
                    if future is not None and path == files[i]:
                        loaded.append((path, future.result()))
                    else:  # no read ahead (overlap off), or a progress wrapper that reordered
                        loaded.append((path, read_file(path, options)))
                except Exception as exc:
                    loaded.append((path, exc))
            together = _restore_together(restorer, [r for _, r in loaded if isinstance(r, _Read)], options)
            for k, (path, read) in enumerate(loaded):
                try:
                    if isinstance(read, BaseException):
                        raise read
                    done = together.get(id(read))
                    result, images, seconds = compute_file(restorer, read, out_dir, options, stem=stems[path],
                                                           restored_all=done[0] if done else None)
                    seconds += done[1] if done else 0.0
                except Exception as exc:
                    finish_write()
                    record(_failed(path, exc))
                    continue
                finish_write()
                writing = (path, pool.submit(write_outputs, result, images, seconds, out_dir, protected))
                if not overlap:
                    finish_write()

        prefetch(0, group + 1)
        items: list[tuple[int, Path]] = []
        try:
            for i, path in enumerate(progress(files) if progress else files):
                items.append((i, path))
                if len(items) < group and i + 1 < len(files):
                    continue
                prefetch(i + 1, i + 1 + group)
                batch_items, items = items, []
                process(batch_items)
            if items:
                process(items)
        except KeyboardInterrupt:
            summary.interrupted = True
            for future in reads.values():
                future.cancel()
        finally:
            finish_write()  # a started write completes (all of a file's outputs or none)
    summary.seconds = time.perf_counter() - start
    if options.report is not None:
        from .report import build_report, write_report

        try:
            summary.report_path = write_report(options.report, build_report(summary, options))
        except OSError as exc:  # the images are written; say the record is not, and why
            note(f"the report could not be written to {options.report}: {exc.strerror or exc}")
    return summary
