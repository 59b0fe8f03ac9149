"""`facerestore components DATAROOT -o FILE`: eye/mouth boxes for training, from our detector."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import output_file_problem


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("components", help="eye/mouth boxes of a folder of aligned faces, for the component losses",
                       description="Detect the five landmarks of every aligned face in DATAROOT (sorted by name, "
                                   "as training lists them) and write the eye and mouth boxes in the layout of the "
                                   "official FFHQ_eye_mouth_landmarks_512.pth; give the file as "
                                   "datasets.train.component_path.")
    p.add_argument("dataroot", type=Path, help="folder of aligned face images (the dataset's dataroot_gt)")
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the .pth file")
    p.add_argument("--detector", default="mtcnn", help="face detector (default: the built-in MTCNN)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..train.components import make_component_file
    from ..train.dataset import scan_images

    if not args.dataroot.is_dir():
        print(f"error: {args.dataroot} is not a folder", file=sys.stderr)
        return 2
    problem = output_file_problem(args.output, "-o/--output")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    images = scan_images(args.dataroot)
    if not images:
        print(f"error: no images in {args.dataroot}", file=sys.stderr)
        return 2
    report = make_component_file(images, args.output, detector=args.detector,
                                 progress=lambda xs: tqdm(xs, desc="landmarks", unit="face"))
    print(report)
    return 0
