"""Spreading a large run over processes, GPUs and hosts with the launchers people already have.

No scheduler of our own: each process takes a deterministic share of the inputs from the rank
its launcher gives it (``torchrun``'s ``RANK``/``WORLD_SIZE``, SLURM's ``SLURM_PROCID``/
``SLURM_NTASKS``, a job array's ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``, or
``--shard i/n``), skips inputs whose results are already complete (so a killed run is simply
started again), and writes a summary of its own share that :func:`merge_summaries` adds up.

Shares are taken by position in the sorted input list (file k goes to shard k mod n): balanced,
and identical on every host that sees the same listing (a shared file system, or the same list
file given with ``-i list.txt``).
"""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath

from ..io.atomic import atomic_write_text
from ..io.images import WRITABLE_EXTENSIONS
from .options import OptionsError, RestoreOptions

__all__ = ["Shard", "ShardSummary", "SummaryError", "already_complete", "completion_markers", "merge_summaries",
           "shard_from_env", "parse_shard", "read_input_list", "read_summary", "take_shard"]

SUMMARY_GLOB = "summary-shard*-of*.json"


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def summary_name(self) -> str:
        return f"summary-shard{self.index:05d}-of{self.count:05d}.json"


def parse_shard(text: str) -> Shard:
    """``"i/n"`` with 0 <= i < n."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise OptionsError("--shard", f"expected i/n such as 0/4, got '{text}'") from None
    if count < 1 or not 0 <= index < count:
        raise OptionsError("--shard", f"needs 0 <= i < n, got {index}/{count}")
    return Shard(index, count)


_ENV_PAIRS = (("RANK", "WORLD_SIZE"), ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
              ("SLURM_PROCID", "SLURM_NTASKS"))


def shard_from_env(environ: Mapping[str, str] = os.environ) -> Shard | None:
    """The shard a launcher assigned through the environment, or None when not launched so.

    Half a pair is an error, not an unsharded run in which every process would do every input:
    torchrun sets RANK and WORLD_SIZE together, and a SLURM task other than the first has its count.
    """
    torch_pair = [key for key in _ENV_PAIRS[0] if key in environ]
    if len(torch_pair) == 1:
        _half_pair(environ, *_ENV_PAIRS[0])
    for rank_key, size_key in _ENV_PAIRS:
        if rank_key in environ and size_key in environ:
            try:
                return parse_shard(f"{int(environ[rank_key])}/{int(environ[size_key])}")
            except (ValueError, OptionsError):
                raise OptionsError(rank_key, f"{rank_key}={environ[rank_key]} and {size_key}="
                                             f"{environ[size_key]} do not make a shard") from None
    for rank_key, size_key in _ENV_PAIRS[1:]:
        # not SLURM_NTASKS alone: an sbatch script has it before srun starts the tasks
        if environ.get(rank_key, "0").strip() != "0":
            _half_pair(environ, rank_key, size_key)
    return None


def _half_pair(environ: Mapping[str, str], rank_key: str, size_key: str) -> None:
    given, missing = (rank_key, size_key) if rank_key in environ else (size_key, rank_key)
    raise OptionsError(given, f"{given}={environ[given]} is set but {missing} is not, so this process cannot "
                              f"tell its share: set both (as torchrun and srun do), unset {given}, or give --shard I/N")


def take_shard(files: Sequence[Path], shard: Shard) -> list[Path]:
    """This shard's inputs: every ``count``-th of the list sorted by path, from ``index``."""
    ordered = sorted(files, key=lambda p: str(p))
    return ordered[shard.index::shard.count]


def read_input_list(path: Path) -> list[Path]:
    """``-i list.txt``: one image path per line (relative to the list's folder); ``#`` comments."""
    files = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            files.append(p if p.is_absolute() else path.parent / p)
    return files


def completion_markers(path: PurePath, options: RestoreOptions, stem: str | None = None) -> list[str]:
    """The relative names (``restored_imgs/a.jpg``) of which any one, present, means ``path``'s
    results are all there. The pasted image is the last file of a photo's group to be committed
    (faces first), so its presence means the whole group is there; an aligned input has one
    face, and its side-by-side ``cmp`` image is committed last."""
    from .batch import output_paths

    stem = stem or path.stem
    if options.aligned:
        return [output_paths(stem, 1, options, ".png", Path())["cmp"][0].as_posix()]
    if options.ext != "auto":
        candidates = ["." + options.ext]
    else:  # the input's own extension when writable, else PNG (see io.images.choose_output_ext)
        own = path.suffix.lower()
        candidates = [own, ".png"] if own in WRITABLE_EXTENSIONS and own != ".png" else [".png"]
    return [output_paths(stem, 0, options, ext, Path())["restored_imgs"][0].as_posix() for ext in candidates]


def already_complete(path: Path, out_dir: Path, options: RestoreOptions, stem: str | None = None) -> bool:
    """Whether ``path``'s results are all on disk (see :func:`completion_markers`)."""
    return any((out_dir / name).is_file() for name in completion_markers(path, options, stem))


@dataclass
class ShardSummary:
    """What one process did; written as JSON beside the results, added up by merge_summaries."""

    shard: str = "0/1"
    host: str = field(default_factory=platform.node)
    inputs: int = 0  # this shard's share
    skipped_complete: int = 0
    restored: int = 0
    faces: int = 0
    restored_files: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    finished_at: float = field(default_factory=time.time)

    def write(self, out_dir: Path, shard: Shard) -> Path:
        return atomic_write_text(out_dir / shard.summary_name, json.dumps(asdict(self), indent=2) + "\n")


class SummaryError(ValueError):
    """A shard summary that cannot be used; the message names the file and what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


_COUNTS = ("inputs", "skipped_complete", "restored", "faces")


def read_summary(path: Path) -> dict:
    """One shard summary as written by :meth:`ShardSummary.write`, checked key by key (what
    :func:`merge_summaries` reads); :class:`SummaryError` otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SummaryError(path, f"cannot be read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SummaryError(path, f"not JSON ({exc}); the run that wrote it may have been cut off") from None
    if not isinstance(data, dict):
        raise SummaryError(path, f"not a JSON object (a {type(data).__name__})")
    shard = data.get("shard")
    try:
        parse_shard(shard if isinstance(shard, str) else "")
    except OptionsError:
        raise SummaryError(path, f"'shard' should be 'I/N' such as '0/4', got {shard!r}") from None
    for key in _COUNTS:
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SummaryError(path, f"'{key}' should be a count, got {value!r}")
    seconds = data.get("seconds", 0.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise SummaryError(path, f"'seconds' should be a number, got {seconds!r}")
    if not isinstance(data.get("interrupted", False), bool):
        raise SummaryError(path, f"'interrupted' should be true or false, got {data['interrupted']!r}")
    failed = data.get("failed", [])
    if not isinstance(failed, list) or not all(
            isinstance(f, dict) and isinstance(f.get("file"), str) and isinstance(f.get("error"), str) for f in failed):
        raise SummaryError(path, "'failed' should be a list of {\"file\": ..., \"error\": ...}, got "
                                 f"{json.dumps(failed)[:80]}")
    return data


def merge_summaries(paths: Iterable[Path]) -> dict:
    """Add up shard summaries: totals, every failure, and which shards are missing or unfinished.
    A summary that cannot be used is listed under ``unreadable`` (file and problem), and its
    shard counts as missing."""
    shards, unreadable = [], []
    for path in paths:
        try:
            shards.append(read_summary(path))
        except SummaryError as exc:
            unreadable.append({"file": str(exc.path), "error": exc.problem})
    total = {"shards": len(shards), "inputs": 0, "skipped_complete": 0, "restored": 0, "faces": 0,
             "failed": [], "interrupted_shards": [], "missing_shards": [], "seconds": 0.0,
             "unreadable": unreadable}
    counts = set()
    seen = set()
    for s in shards:
        for key in _COUNTS:
            total[key] += int(s.get(key, 0))
        total["failed"].extend(s.get("failed", []))
        total["seconds"] = max(total["seconds"], float(s.get("seconds", 0.0)))
        if s.get("interrupted"):
            total["interrupted_shards"].append(s["shard"])
        index, count = (int(x) for x in s["shard"].split("/"))
        seen.add(index)
        counts.add(count)
    if len(counts) == 1:
        (count,) = counts
        total["missing_shards"] = [f"{i}/{count}" for i in range(count) if i not in seen]
    elif len(counts) > 1:
        total["note"] = f"summaries from runs with different shard counts: {sorted(counts)}"
    return total
