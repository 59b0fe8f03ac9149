"""`facerestore restore --engine ray`: the flags of a run on a Ray cluster, a progress line with
photos/s, and the summary. The work is done by :func:`facerestore.ray.run_ray`."""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable


def _actors(text: str) -> int | tuple[int, int]:
    try:
        if "-" in text:
            low, high = (int(x) for x in text.split("-"))
            if 1 <= low <= high:
                return (low, high)
        elif int(text) >= 1:
            return int(text)
    except ValueError:
        pass
    raise ValueError(f"--actors: expected N or MIN-MAX with 1 <= MIN <= MAX, got '{text}'")


class _Progress:
    """``restoring: 120/1000 photos, 2 failed, 3.4 photos/s, ~4 min left`` on one line (a
    terminal), or a line every 30 s (logs)."""

    def __init__(self, total: int, *, stream=None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.start = self.last = time.perf_counter()
        self.tty = self.stream.isatty()
        self.every = 0.5 if self.tty else 30.0

    def line(self, done: int, failed: int) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = done / elapsed
        left = f", ~{(self.total - done) / rate / 60:.0f} min left" if rate > 0 and done < self.total else ""
        return f"restoring: {done}/{self.total} photos, {failed} failed, {rate:.2f} photos/s{left}"

    def update(self, done: int, failed: int, *, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < self.every:
            return
        self.last = now
        text = self.line(done, failed)
        if self.tty:
            print("\r" + text + ("\n" if final else ""), end="", file=self.stream, flush=True)
        else:
            print(text, file=self.stream, flush=True)


def run_on_ray(args: argparse.Namespace, options_from_args: Callable, note: Callable[[str], None]) -> int:
    """``options_from_args``: cli.restore's, passed in (this module is imported by that one)."""
    from ..pipeline.options import OptionsError

    try:
        import ray  # noqa: F401  (only to say what to install)
    except ImportError:
        print("error: --engine ray needs Ray Data: pip install 'facerestore[ray]'", file=sys.stderr)
        return 2
    from ..ray import RaySettings, list_inputs, run_ray
    from ..ray.driver import output_stems

    try:
        options = options_from_args(args)
        if args.gpus_per_actor > 0 and options.device == "cpu":
            options = options.replace(device="cuda")
        # The driver may have no GPU (a cluster's head node): the device is checked on the actors.
        options.replace(device="cpu").validate()
        settings = RaySettings(address=args.ray_address, actors=_actors(args.actors),
                               gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor)
        for flag, given in (("--shard", args.shard), ("--report", args.report)):
            if given:
                raise OptionsError(flag, "is not available with --engine ray (the cluster balances the work "
                                         "itself, and the run's summary is written to the output folder)")
    except (OptionsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        inputs = list_inputs(args.input, note)
    except (OSError, ValueError) as exc:
        print(f"error: input {exc}", file=sys.stderr)
        return 2
    from ..io.video import folder_videos

    videos = folder_videos(args.input) if "://" not in str(args.input) else []
    if videos:
        note(f"{len(videos)} video(s) in {args.input} are not restored by --engine ray (run them without it)")
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its execution plans; we print progress
    if not inputs:
        print(f"error: no images found in {args.input}", file=sys.stderr)
        return 2
    stems = output_stems(inputs, note)
    progress = _Progress(len(inputs))

    def on_row(row: dict, summary) -> None:
        if row["status"] == "failed":
            print(f"error: {row['error']}", file=sys.stderr)
        for message in row["notes"] or ():
            note(message)
        progress.update(summary.skipped_complete + summary.done, len(summary.failed))

    try:
        summary = run_ray(inputs, args.output, options, settings, stems=stems, on_row=on_row, on_note=note)
    except OptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the actors could not start (a model file missing on a node, ...)
        if args.verbose:
            raise
        lines = [line for line in str(exc).splitlines() if line.strip()]
        print(f"error: the run on Ray failed: {lines[-1] if lines else type(exc).__name__}", file=sys.stderr)
        return 2
    progress.update(summary.skipped_complete + summary.done, len(summary.failed), final=True)
    if summary.skipped_complete:
        note(f"{summary.skipped_complete} of {summary.inputs} inputs already have complete results and are skipped")
    head = "interrupted: " if summary.interrupted else ""
    print(f"{head}{summary.restored}/{summary.inputs - summary.skipped_complete} files restored, {summary.faces} "
          f"faces, {len(summary.failed)} failed, {summary.seconds:.1f} s (ray)")
    print(f"results in {args.output}; summary in {summary.summary_path}")
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0
