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
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Iterable, Mapping, Sequence

from ..io.atomic import atomic_write_text
from ..io.images import WRITABLE_EXTENSIONS
from .options import OptionsError, RestoreOptions

__all__ = ["Shard", "ShardSummary", "already_complete", "completion_markers", "merge_summaries",
           "shard_from_env", "parse_shard", "read_input_list", "take_shard"]

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
    """The shard a launcher assigned through the environment, or None when not launched so."""
    for rank_key, size_key in _ENV_PAIRS:
        if rank_key in environ and size_key in environ:
            try:
                return parse_shard(f"{int(environ[rank_key])}/{int(environ[size_key])}")
            except (ValueError, OptionsError):
                raise OptionsError(rank_key, f"{rank_key}={environ[rank_key]} and {size_key}="
                                             f"{environ[size_key]} do not make a shard") from None
    return None


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


def merge_summaries(paths: Iterable[Path]) -> dict:
    """Add up shard summaries: totals, every failure, and which shards are missing or unfinished."""
    shards = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    total = {"shards": len(shards), "inputs": 0, "skipped_complete": 0, "restored": 0, "faces": 0,
             "failed": [], "interrupted_shards": [], "missing_shards": [], "seconds": 0.0}
    counts = set()
    seen = set()
    for s in shards:
        for key in ("inputs", "skipped_complete", "restored", "faces"):
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
