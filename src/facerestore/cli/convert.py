"""`facerestore convert`: GFPGANBilinear -> GFPGANv1Clean checkpoints (the official v1.2 route)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import output_file_problem


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a GFPGANBilinear checkpoint to GFPGANv1Clean",
                       description="Fold a GFPGANBilinear checkpoint into the GFPGANv1Clean layout (the "
                                   "route of the official v1.2 weights). The output is checked to load "
                                   "strictly and to give the same image as the input model. With "
                                   "--unpickle: rewrite a checkpoint that safe loading refuses as safetensors.")
    p.add_argument("input", type=Path, help="GFPGANBilinear weights (.pth or .safetensors)")
    p.add_argument("output", type=Path, help="where to write the clean weights (.pth or .safetensors)")
    p.add_argument("--unpickle", action="store_true",
                   help="instead: unpickle INPUT once WITH FULL TRUST (only for a file from a source you "
                        "trust) and write its network to OUTPUT.safetensors, which then loads safely")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models.convert import convert_file

    if args.output.resolve() == args.input.resolve():
        print("error: the output must not overwrite the input", file=sys.stderr)
        return 2
    problem = output_file_problem(args.output, "output")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.unpickle:
        from ..models.convert import unpickle_to_safetensors
        from ..models.loading import CheckpointError

        try:
            print(unpickle_to_safetensors(args.input, args.output))
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    report = convert_file(args.input, args.output)
    print(report)
    return 0
