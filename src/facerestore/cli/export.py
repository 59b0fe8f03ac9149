"""`facerestore export MODEL OUT.onnx`: a restoration or upscaling network as an ONNX graph."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import output_file_problem


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a face restoration or upscaling network to ONNX",
                       description="Write MODEL (a zoo name or a weights file) as an ONNX graph with a "
                                   "dynamic batch axis (and dynamic height/width for upscalers); GFPGAN "
                                   "models use their stored noise; CodeFormer is traced at its default call "
                                   "(w=0, no adain), not the official inference's. The graph is run by onnxruntime and "
                                   "compared with PyTorch before the file appears (written atomically). "
                                   "Needs: pip install 'facerestore[export]'.")
    p.add_argument("model", help="zoo name (e.g. v1.4) or weights file (.pth / .ckpt / .safetensors)")
    p.add_argument("output", type=Path, help="where to write the graph (.onnx)")
    p.add_argument("--size", type=int, default=None,
                   help="example height/width to trace with (upscalers; default 64; faces use their input size)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--no-download", action="store_true", help="never download model files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.onnx import export_onnx
    from ..models.loading import load_model

    if args.output.suffix.lower() != ".onnx":
        raise ValueError(f"the output should end in .onnx, got {args.output}")
    if args.output.is_dir():
        raise ValueError(f"{args.output} is a folder; give a file name ending in .onnx")
    if args.size is not None and args.size <= 0:
        raise ValueError(f"--size must be positive, got {args.size}")
    problem = output_file_problem(args.output, "output")
    if problem:
        raise ValueError(problem)
    model = load_model(args.model, allow_download=not args.no_download)
    print(export_onnx(model, args.output, size=args.size, opset=args.opset, check=not args.no_check))
    return 0
