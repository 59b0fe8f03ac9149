"""`facerestore summarize OUT`: add up the per-shard summaries of a sharded run."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summarize", help="add up the shard summaries of a sharded restore run",
                       description="Reads OUT/summary-shard*-of*.json (written by `facerestore restore` "
                                   "when sharded), prints the totals, lists failures and missing or "
                                   "interrupted shards, and writes OUT/summary.json.")
    p.add_argument("output", type=Path, help="the -o folder of the sharded run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io.atomic import atomic_write_text
    from ..pipeline.shard import SUMMARY_GLOB, merge_summaries

    if not args.output.is_dir():
        print(f"error: {args.output}: no such folder (give the -o folder of the sharded run)", file=sys.stderr)
        return 2
    paths = sorted(args.output.glob(SUMMARY_GLOB))
    if not paths:
        print(f"error: no shard summaries ({SUMMARY_GLOB}) in {args.output}", file=sys.stderr)
        return 2
    total = merge_summaries(paths)
    atomic_write_text(args.output / "summary.json", json.dumps(total, indent=2) + "\n")
    print(f"{total['shards']} shards: {total['inputs']} inputs, {total['restored']} restored, "
          f"{total['skipped_complete']} already complete, {total['faces']} faces, {len(total['failed'])} failed")
    for failure in total["failed"]:
        print(f"  failed: {failure['file']}: {failure['error']}")
    for key, label in (("missing_shards", "missing"), ("interrupted_shards", "interrupted")):
        if total[key]:
            print(f"  {label} shards: {', '.join(total[key])}")
    for bad in total["unreadable"]:
        print(f"  unreadable summary: {bad['file']}: {bad['error']}")
    incomplete = bool(total["failed"] or total["missing_shards"] or total["interrupted_shards"] or total["unreadable"])
    return 1 if incomplete else 0
