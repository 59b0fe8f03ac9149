"""Restore a folder of photos into the official output layout, file by file.

One bad file never stops the batch: it gets a one-line error, leaves no output behind, and makes
the exit status non-zero. Inputs are never written to.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..io.images import (
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    choose_output_ext,
    compose_output,
    holds_alpha,
    list_images,
    read_image,
    write_image,
)

OUTPUT_FOLDERS = ("cropped_faces", "restored_faces", "cmp", "restored_imgs")


@dataclass
class BatchSummary:
    files: int = 0
    succeeded: int = 0
    faces: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    no_face: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def report(self) -> str:
        lines = [f"{self.succeeded}/{self.files} files restored, {self.faces} faces, "
                 f"{len(self.failures)} failed, {self.seconds:.1f} s"]
        if self.no_face:
            lines.append(f"no face found in {len(self.no_face)}: " + ", ".join(p.name for p in self.no_face))
        return "\n".join(lines)


def _outputs_for(stem: str, n_faces: int, suffix: str | None, ext: str, out_dir: Path,
                 aligned: bool) -> dict[str, list[Path]]:
    """The official file names: ``{stem}_{idx:02d}[_{suffix}].png`` per face, ``{stem}[_{suffix}].{ext}``."""
    tail = f"_{suffix}" if suffix else ""
    faces = [f"{stem}_{i:02d}" for i in range(n_faces)]
    paths = {
        "cropped_faces": [out_dir / "cropped_faces" / f"{f}.png" for f in faces],
        "restored_faces": [out_dir / "restored_faces" / f"{f}{tail}.png" for f in faces],
        "cmp": [out_dir / "cmp" / f"{f}.png" for f in faces],
        "restored_imgs": [] if aligned else [out_dir / "restored_imgs" / f"{stem}{tail}{ext}"],
    }
    return paths


def _as_cv2_array(loaded: LoadedImage) -> np.ndarray:
    """The image as ``cv2.imread(..., IMREAD_UNCHANGED)`` would give it (BGR or BGRA, 8/16-bit)."""
    if loaded.alpha is None:
        return loaded.pixels
    return np.dstack([loaded.pixels, loaded.alpha])


def _output_stems(files: list[Path]) -> dict[Path, str]:
    """Output names use the input's stem, as the official; photos that share one (a.jpg, a.png)
    get their extension added so that neither overwrites the other's results."""
    counts: dict[str, int] = {}
    for path in files:
        counts[path.stem] = counts.get(path.stem, 0) + 1
    stems = {}
    for path in files:
        shared = counts[path.stem] > 1
        stems[path] = f"{path.stem}_{path.suffix.lstrip('.').lower()}" if shared else path.stem
        if shared:
            print(f"note: {path.name} shares its name with another input; its results are named "
                  f"{stems[path]}*", file=sys.stderr)
    return stems


def restore_file(restorer, path: Path, out_dir: Path, args: argparse.Namespace,
                 protected: set[Path], stem: str | None = None) -> int:
    """Restore one file and write its outputs; returns the number of faces. Raises on failure,
    after removing any output of this file already written."""
    loaded = read_image(path, max_pixels=int(args.max_pixels))
    ext = choose_output_ext(loaded, None if args.ext == "auto" else args.ext)
    if loaded.alpha is not None and not holds_alpha(ext):
        # The user asked for a format without transparency (--ext jpg): keep the picture, say so.
        tqdm.write(f"note: {path.name}: {ext} cannot store transparency, the alpha channel is dropped",
                   file=sys.stderr)
        loaded = dataclasses.replace(loaded, alpha=None)
    cropped, restored, restored_img = restorer.enhance(
        _as_cv2_array(loaded), has_aligned=args.aligned, only_center_face=args.only_center_face,
        paste_back=True, weight=args.weight)
    targets = _outputs_for(stem or path.stem, len(cropped), args.suffix, ext, out_dir, args.aligned)
    images: list[tuple[Path, np.ndarray]] = []
    for i, (crop, face) in enumerate(zip(cropped, restored)):
        images.append((targets["cropped_faces"][i], crop))
        images.append((targets["restored_faces"][i], face))
        images.append((targets["cmp"][i], np.concatenate([crop, face], axis=1)))
    if restored_img is not None:
        # enhance returns the input's layout: BGR, or BGRA when the input kept its alpha.
        alpha = restored_img[:, :, 3] if restored_img.shape[2] == 4 else None
        final = compose_output(restored_img[:, :, :3], loaded, alpha_upscaled=alpha, keep_gray=restorer.keep_grey)
        images.append((targets["restored_imgs"][0], final))
    written: list[Path] = []
    try:
        for target, image in images:
            if target.resolve() in protected:
                raise ImageWriteError(target, "would overwrite an input file; choose another -o")
            write_image(target, image)
            written.append(target)
    except BaseException:
        for target in written:
            target.unlink(missing_ok=True)
        raise
    return len(cropped)


def _background_choice(name: str, device: str, allow_download: bool) -> str | None:
    """What ``--bg_upsampler`` means: ``realesrgan`` behaves as the official CLI (used on GPU only,
    resized otherwise, with a note); a zoo name or file is used as given, on any device."""
    if name.lower() == "none":
        return None
    if name.lower() != "realesrgan":
        return name
    if not str(device).startswith("cuda"):
        print("note: Real-ESRGAN is slow on CPU, so the background is resized instead "
              "(ask for it anyway with --bg_upsampler realesrgan-x2plus)", file=sys.stderr)
        return None
    from ..models import zoo

    entry = zoo.find_entry("realesrgan-x2plus")
    try:
        zoo.ensure_model_file(entry, allow_download=allow_download)
    except zoo.ModelUnavailableError as exc:
        print(f"note: background resized instead of Real-ESRGAN: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None
    return entry.name  # by name, so the Restorer's load checks it holds the zoo's architecture


def _build_restorer(args: argparse.Namespace):
    from .restorer import Restorer

    model = args.model or _version_to_model(args.version)
    allow_download = not args.no_download
    return Restorer(model=model, upscale=args.upscale,
                    bg_upsampler=_background_choice(args.bg_upsampler, args.device, allow_download),
                    bg_tile=args.bg_tile, detector=args.detector, parser=args.parser, device=args.device,
                    seed=args.seed, allow_download=allow_download)


def _version_to_model(version: str) -> str:
    version = str(version)
    if version.lower() == "restoreformer":
        return "RestoreFormer"
    return version if version.startswith("v") else f"v{version}"


def run_restore(args: argparse.Namespace) -> int:
    inputs = Path(args.input)
    if not inputs.exists():
        print(f"error: input {inputs} does not exist", file=sys.stderr)
        return 2
    files = list_images(inputs)
    if not files:
        print(f"error: no images found in {inputs}", file=sys.stderr)
        return 2
    out_dir = Path(args.output)
    protected = {p.resolve() for p in files}
    stems = _output_stems(files)

    summary = BatchSummary(files=len(files))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restorer = _build_restorer(args)
    for warning in caught:  # one readable line each, not Python's warning format
        print(f"note: {warning.message}", file=sys.stderr)
    for path in tqdm(files, desc="restoring", unit="img", disable=len(files) < 2 or not sys.stderr.isatty()):
        try:
            n = restore_file(restorer, path, out_dir, args, protected, stems[path])
        except (ImageReadError, ImageWriteError) as exc:
            summary.failures.append((path, str(exc)))
            tqdm.write(f"error: {exc}", file=sys.stderr)
        except Exception as exc:  # one bad file must not stop the batch
            summary.failures.append((path, str(exc)))
            tqdm.write(f"error: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            if args.verbose:
                traceback.print_exc()
        else:
            summary.succeeded += 1
            summary.faces += n
            if n == 0:
                summary.no_face.append(path)
    summary.seconds = time.perf_counter() - start
    print(summary.report())
    print(f"results in {out_dir}/" + "{" + ",".join(OUTPUT_FOLDERS) + "}")
    return 1 if summary.failures else 0
