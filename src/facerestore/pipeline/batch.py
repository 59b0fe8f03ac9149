"""Restore files into the official output layout, one file after another.

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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
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
    args = dict(has_aligned=options.aligned, only_center_face=options.only_center_face, paste_back=True,
                weight=options.weight)
    if hasattr(restorer, "restore"):
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
    result.faces = len(cropped)
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- the batch


def run_batch(files: list[Path], out_dir: Path, options: RestoreOptions, *, restorer=None,
              on_note: NoteCallback | None = None, on_file: Callable[[FileResult], None] | None = None,
              progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None,
              stems: dict[Path, str] | None = None) -> BatchSummary:
    """Restore ``files`` into ``out_dir``; returns what happened, file by file.

    ``options`` is validated and the output folder and input/output clashes are checked before
    any model is loaded. ``restorer`` reuses a loaded :class:`~facerestore.Restorer` (a web
    worker); by default one is built from ``options``, and its notes (warnings) go to ``on_note``.
    ``progress`` wraps the file iterable (a progress bar). ``stems`` names each file's results
    (default :func:`output_stems`; a sharded run passes the names computed over all inputs). Ctrl-C stops after the current file's
    outputs are either all written or not at all; the summary says so (``interrupted``).
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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            restorer = Restorer.from_options(options)
        for warning in caught:
            note(str(warning.message))
    summary.model_files = dict(getattr(restorer, "model_files", {}))
    try:
        for path in (progress(files) if progress else files):
            try:
                result = restore_file(restorer, path, out_dir, options, stem=stems[path], protected=protected)
            except (ImageReadError, ImageWriteError, OutputTooLargeError) as exc:
                result = FileResult(path, error=str(exc))
            except Exception as exc:  # one bad file must not stop the batch
                result = FileResult(path, error=f"{path}: {type(exc).__name__}: {exc}", exception=exc)
            for message in result.notes:
                if on_note is not None:
                    on_note(message)
            summary.results.append(result)
            if on_file is not None:
                on_file(result)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.seconds = time.perf_counter() - start
    if options.report is not None:
        from .report import build_report, write_report

        try:
            summary.report_path = write_report(options.report, build_report(summary, options))
        except OSError as exc:  # the images are written; say the record is not, and why
            note(f"the report could not be written to {options.report}: {exc.strerror or exc}")
    return summary
