"""`facerestore train -c OPTIONS.yml`: GFPGAN training with the official option files."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

USAGE = """One process:   facerestore train -c configs/train_tiny.yml
Many (DDP):    torchrun --standalone --nproc_per_node 4 -m facerestore train -c options/train_gfpgan_v1.yml
Many nodes:    torchrun --nnodes 2 --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:29500
                        --nproc_per_node 8 -m facerestore train -c OPTIONS.yml
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train GFPGAN (official option files; torchrun for several GPUs)",
                       description=USAGE,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", "-opt", dest="config", type=Path, required=True,
                   help="option file (YAML), e.g. configs/train_tiny.yml or the official train_gfpgan_v1.yml")
    p.add_argument("--auto-resume", "--auto_resume", dest="auto_resume", action="store_true",
                   help="continue from the latest training state of this experiment, if any")
    p.add_argument("--launcher", choices=["auto", "none", "pytorch"], default="auto",
                   help="'pytorch' = distributed under torchrun; 'auto' = distributed when torchrun started "
                        "several processes")
    p.add_argument("--max-iters", type=int, default=None,
                   help="stop after this many iterations of this run (default: train.total_iter)")
    p.add_argument("--experiments-root", type=Path, default=None,
                   help="checkpoint/log folder (default experiments/<name>)")
    p.add_argument("--check-data", action="store_true",
                   help="decode every training image and report the broken ones, then exit (no training)")
    p.add_argument("--verbose", action="store_true", help="show tracebacks")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train.config import ConfigError, TrainSetupError, load_config
    from ..train.loop import check_data, run_training

    try:
        cfg = load_config(args.config)
        if args.experiments_root is not None:
            cfg.path.experiments_root = str(args.experiments_root)
        if args.check_data:
            count, problems = check_data(cfg)
            for p in problems:
                print(f"broken: {p}", file=sys.stderr)
            print(f"checked {count} training images: "
                  + (f"{len(problems)} broken; fix or remove them before training" if problems else "all readable"))
            return 2 if problems else 0
        summary = run_training(cfg, auto_resume=args.auto_resume, launcher=args.launcher, max_iters=args.max_iters)
    except (ConfigError, TrainSetupError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary.get("stopped_by"):
        signum = int(getattr(signal, summary["stopped_by"]))
        print(f"stopped by {summary['stopped_by']} at iteration {summary['iter']}; training state saved in "
              f"{summary['root'] / 'training_states'}; continue with --auto-resume", file=sys.stderr)
        return 128 + signum
    if os.environ.get("RANK", "0") == "0":
        print(f"done: iteration {summary['iter']}, checkpoints in {summary['root'] / 'models'}")
    return 0
