"""The ``facerestore`` command: restore photos, manage model files, convert checkpoints.

The CLI only parses arguments and reports; the work is done by the library
(:mod:`facerestore.batch`, :mod:`facerestore.zoo`, :mod:`facerestore.convert`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

SUBCOMMANDS = ("restore", "models", "convert")


def _add_restore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore", help="restore the faces in photos (the official inference_gfpgan.py flags work)",
        description="Detect, align, restore and paste back every face of each photo. "
                    "Flags keep the spellings of the official inference_gfpgan.py.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-i", "--input", default="inputs/whole_imgs", help="an image or a folder of images")
    p.add_argument("-o", "--output", default="results", help="output folder")
    p.add_argument("-v", "--version", default="1.4",
                   help="official model version: 1, 1.2, 1.3, 1.4 or RestoreFormer (see --model)")
    p.add_argument("--model", default=None,
                   help="a zoo name or a weights file (.pth/.safetensors); overrides -v")
    p.add_argument("-s", "--upscale", type=float, default=2, help="final upsampling scale of the image")
    p.add_argument("--bg_upsampler", "--bg-upsampler", default="realesrgan",
                   help="background upsampler: realesrgan (as the official CLI: on GPU only, and only "
                        "when its weights can be had; otherwise the background is resized), none, or a "
                        "zoo name (realesrgan-x2plus, realesrgan-x4plus) or weights file, used on any device")
    p.add_argument("--bg_tile", "--bg-tile", type=int, default=400,
                   help="tile size for the background upsampler, 0 for no tiling")
    p.add_argument("--suffix", default=None, help="suffix of the restored faces")
    p.add_argument("--only_center_face", "--only-center-face", action="store_true",
                   help="only restore the face nearest the centre")
    p.add_argument("--aligned", action="store_true", help="inputs are aligned 512x512 faces")
    p.add_argument("--ext", default="auto", choices=("auto", "jpg", "png"),
                   help="output image extension; auto keeps the input's")
    p.add_argument("-w", "--weight", type=float, default=0.5,
                   help="blend of restored and input face: 0 = input, 1 = fully restored")
    p.add_argument("--detector", default="auto",
                   help="face detector: auto (RetinaFace if its weights are present, else the built-in "
                        "MTCNN), mtcnn, retinaface-resnet50, retinaface-mobilenet0.25, or a weights file")
    p.add_argument("--parser", default="parsenet",
                   help="face parsing model for the paste mask (parsenet, none, or a file); "
                        "none uses a soft square mask")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
    p.add_argument("--seed", type=int, default=None,
                   help="draw fresh StyleGAN noise from this seed (default: the model's stored noise, "
                        "so results are reproducible)")
    p.add_argument("--max-pixels", type=float, default=100e6,
                   help="refuse images with more pixels than this (protects memory)")
    p.add_argument("--no-download", action="store_true", help="never download model files")
    p.add_argument("--verbose", action="store_true", help="show tracebacks for failures")
    p.set_defaults(func=_run_restore)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, download and verify model files",
                       description="Without options, list the released models and which are present. "
                                   "Files live in $FACERESTORE_HOME (default ~/.cache/facerestore).")
    p.add_argument("--download", nargs="+", metavar="NAME", help="download these models now")
    p.add_argument("--verify", action="store_true", help="re-hash every present file against its sha256")
    p.set_defaults(func=_run_models)


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a GFPGANBilinear checkpoint to GFPGANv1Clean",
                       description="Fold a GFPGANBilinear checkpoint into the GFPGANv1Clean layout (the "
                                   "route of the official v1.2 weights). The output is checked to load "
                                   "strictly and to give the same image as the input model.")
    p.add_argument("input", type=Path, help="GFPGANBilinear weights (.pth or .safetensors)")
    p.add_argument("output", type=Path, help="where to write the clean weights (.pth or .safetensors)")
    p.set_defaults(func=_run_convert)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facerestore",
        description="Blind face restoration with the GFPGAN family, in plain PyTorch. "
                    "`facerestore -i photos -o results` is short for `facerestore restore ...`.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"facerestore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{restore,models,convert}")
    _add_restore(sub)
    _add_models(sub)
    _add_convert(sub)
    return parser


def _run_restore(args: argparse.Namespace) -> int:
    from ..pipeline.batch import run_restore

    return run_restore(args)


def _human(size: int | None) -> str:
    return "?" if size is None else f"{size / 2**20:.1f} MiB"


def _run_models(args: argparse.Namespace) -> int:
    from ..models import zoo

    status = 0
    for name in args.download or ():
        entry = zoo.find_entry(name)
        if entry is None:
            print(f"error: unknown model '{name}'", file=sys.stderr)
            status = 1
            continue
        try:
            path = zoo.ensure_model_file(entry)
            print(f"{entry.name}: {path}")
        except (zoo.ModelUnavailableError, zoo.ChecksumError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    if args.download:
        return status
    print(f"cache: {zoo.cache_dir()}")
    print(f"{'name':26} {'file':36} {'size':>10}  {'what':48} status")
    for entry in zoo.MODELS:
        path = zoo.locate(entry)
        state = "-" if path is None else str(path)
        if path is not None and args.verify:
            try:
                zoo.verify_file(path, entry)
                state = f"ok  {path}"
            except zoo.ChecksumError as exc:
                state, status = f"BAD {exc}", 1
        print(f"{entry.name:26} {entry.filename:36} {_human(entry.size):>10}  {entry.description[:48]:48} {state}")
    print(f"{'mtcnn':26} {'(built in)':36} {'1.9 MiB':>10}  {'offline face detector, shipped with the package':48} ok")
    return status


def _run_convert(args: argparse.Namespace) -> int:
    from ..models.convert import convert_file

    if args.output.resolve() == args.input.resolve():
        print("error: the output must not overwrite the input", file=sys.stderr)
        return 2
    report = convert_file(args.input, args.output)
    print(report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The official CLI has no subcommands: `facerestore -i x -o y` means `facerestore restore -i x -o y`.
    if argv and argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "restore")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    verbose = getattr(args, "verbose", False) or os.environ.get("FACERESTORE_VERBOSE")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a clear one-line message; the traceback only when asked for
        if verbose:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
