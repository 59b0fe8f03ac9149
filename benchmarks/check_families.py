"""Compare CodeFormer, RestoreFormer++ and GPEN as facerestore loads them with the official outputs.

The files are written by the reference kit (``../shared/reference/families.py OUT``): the official
networks of sczhou/CodeFormer, wzhouxiff/RestoreFormerPlusPlus and yangxy/GPEN with seeded random
weights, saved in each release's layout (``codeformer.pth``, ``RestoreFormer++.ckpt``,
``GPEN-BFR-512.pth``, ``GPEN-BFR-256.pth``), and ``<name>.outputs.pt`` with the input and what the
official forward returned. This script loads every file with ``facerestore.load_model``
(architecture detected from the weights), makes the official call and prints the max abs difference.

    python benchmarks/check_families.py /tmp/families        # exit 1 if any diff is over 1e-4
    python benchmarks/check_families.py /tmp/families --backend auto   # the same on the engines

A check for developers, not a test: tests/test_official_families.py pins the same behaviour with
small fixtures, without the kit.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

TOLERANCE = 1e-4
FILES = {"codeformer": "codeformer.pth", "restoreformerpp": "RestoreFormer++.ckpt",
         "gpen512": "GPEN-BFR-512.pth", "gpen256": "GPEN-BFR-256.pth"}


def official_call(name: str, model: torch.nn.Module, x: torch.Tensor, setting: str) -> torch.Tensor:
    if name == "codeformer":  # inference_codeformer.py: net(x, w=w, adain=True)[0]
        return model(x, w=float(setting.split("=")[1]), adain=True)[0]
    return model(x)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="what families.py wrote")
    ap.add_argument("--only", default=",".join(FILES), help="comma-separated: " + ",".join(FILES))
    ap.add_argument("--backend", default="torch", choices=("torch", "auto", "onnxruntime", "openvino"),
                    help="engine of every network (default torch: the exact reference path)")
    args = ap.parse_args()
    import facerestore

    torch.set_num_threads(min(2, torch.get_num_threads()))
    worst = 0.0
    print(f"{'file':22} {'class':24} {'engine':12} {'setting':8} {'max abs diff':>12} {'seconds':>8}")
    for name in args.only.split(","):
        path = args.folder / FILES[name]
        model = facerestore.load_model(path, backend=args.backend)
        ref = torch.load(args.folder / f"{name}.outputs.pt", weights_only=True)
        for setting, want in ref["out"].items():
            start = time.perf_counter()
            with torch.inference_mode():
                got = official_call(name, model, ref["x"], setting)
            diff = (got - want).abs().max().item()
            worst = max(worst, diff)
            print(f"{path.name:22} {type(model).__name__:24} {getattr(model, 'engine', 'torch'):12} {setting:8} "
                  f"{diff:12.3g} "
                  f"{time.perf_counter() - start:8.1f}")
    print(f"worst {worst:.3g} ({'within' if worst <= TOLERANCE else 'OVER'} {TOLERANCE})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
