"""`facerestore restore --engine ray`: a whole run on a Ray cluster, with the CLI's guarantees.

The driver lists the inputs and the results already complete (one listing per output folder,
not one request per photo), then streams the rest through an actor pool of :class:`FaceRestore`
stages that write the official layout themselves, atomically per photo. The driver only
receives one small record per photo: it counts, reports progress, and writes the summary that
``facerestore summarize`` reads (``summary-shard00000-of00001.json``).

Faults: an actor that dies is restarted and its batch retried (Ray Data's default for an actor
pool: actors restarted and their tasks retried without end); photos the dead attempt had
finished are found complete and not written again. A batch that keeps killing its workers is
given up after ``task_retries`` retries (:class:`BatchAttempts`, a counter the actors share) and
its photos without results are recorded as failed, so one poison file cannot stall the run.
The temporary files of killed writes are removed once the run has finished. A file that cannot
be read or restored is a failed row, the others go on. Ctrl-C stops the run; started again, only
what is missing is done.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from facerestore.pipeline.options import RestoreOptions
from facerestore.pipeline.shard import Shard, ShardSummary
from facerestore.ray.stage import FaceRestore
from facerestore.ray.storage import Location, is_uri

__all__ = ["BatchAttempts", "RaySettings", "RayRunSummary", "list_inputs", "run_ray"]


@dataclass
class RaySettings:
    """How the run uses the cluster. ``address``: None starts a local cluster (``"auto"`` joins
    the one ``ray start`` made here; ``ray://host:10001`` a remote one). ``actors``: the pool's
    size (an int, or ``(min, max)`` to let it scale). ``gpus_per_actor``: a fraction shares a GPU.
    ``files_per_batch``: photos per ``map_batches`` call (what one retry redoes at most)."""

    address: str | None = None
    actors: int | tuple[int, int] = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    files_per_batch: int = 4
    task_retries: int = 3  # a batch whose worker died is retried this many times, then given up
    init_kwargs: dict = field(default_factory=dict)  # extra ray.init arguments (a local cluster's size)


@dataclass
class RayRunSummary(ShardSummary):
    """A static shard's summary (the one ``facerestore summarize`` reads), and where it was written."""

    summary_path: str | None = None

    @property
    def done(self) -> int:
        return self.restored + len(self.failed)


def list_inputs(source: str | os.PathLike, on_note: Callable[[str], None] | None = None) -> list[str]:
    """The photos ``-i`` names: a local file or folder (as the CLI scans it), a ``.txt`` list
    (one path or URI a line, ``#`` comments, relative paths against the list's folder), or a
    URI of a file or folder that pyarrow opens."""
    from facerestore.io.images import scan_inputs

    text = os.fspath(source)
    if text.lower().endswith(".txt") and (is_uri(text) or Path(text).is_file()):
        from facerestore.ray.storage import read_bytes

        base = text.rsplit("/", 1)[0] if is_uri(text) else str(Path(text).parent)
        items = []
        for line in read_bytes(text).decode("utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                absolute = is_uri(line) or Path(line).is_absolute()
                items.append(line if absolute else (f"{base}/{line}" if is_uri(base) else str(Path(base) / line)))
        return items
    if is_uri(text):
        where = Location(text)
        return [text] if where.is_file() else where.list_images()
    scan = scan_inputs(text)
    for path, reason in scan.skipped:
        if on_note is not None:
            on_note(f"skipped {path}: {reason}")
    return [str(p) for p in scan.files]


def output_stems(inputs: list[str], on_note: Callable[[str], None] | None = None) -> dict[str, str]:
    """The CLI's names (pipeline.batch.output_stems) for paths and URIs alike."""
    from facerestore.pipeline.batch import output_stems as stems_of

    as_paths = {Path(p): p for p in inputs}  # a URI's name, stem and suffix are a path's
    return {as_paths[path]: stem for path, stem in stems_of(list(as_paths), on_note).items()}


def pending_inputs(inputs: list[str], out: Location, options: RestoreOptions, stems: dict[str, str]) -> list[str]:
    """Inputs whose results are not complete in ``out`` (one listing of each marker folder)."""
    from facerestore.pipeline.shard import completion_markers

    present: dict[str, set[str]] = {}

    def there(marker: str) -> bool:
        folder, name = marker.rsplit("/", 1)
        if folder not in present:
            present[folder] = out.names_in(folder)
        return name in present[folder]

    return [p for p in inputs if not any(there(m) for m in completion_markers(PurePosixPath(p), options, stems[p]))]


class _AttemptCounter:
    """A Ray actor (no CPU): how many times each batch now in flight was started."""

    def __init__(self) -> None:
        self.started: dict[str, int] = {}

    def start(self, key: str) -> int:
        self.started[key] = self.started.get(key, 0) + 1
        return self.started[key]

    def finish(self, key: str) -> None:
        self.started.pop(key, None)


@dataclass(frozen=True)
class BatchAttempts:
    """Bounds the tries at a batch whose worker keeps dying.

    Ray Data restarts a dead actor and runs its batch again without end (passing
    ``max_task_retries`` to ``map_batches`` is deprecated since Ray 2.60, and no named argument
    replaces it), so each stage asks a counter actor, shared by the pool, when a batch starts:
    past ``tries`` starts, the stage does not restore it again but records its photos as lost.
    Picklable (it holds the counter's handle), so it travels to the actors.
    """

    counter: Any  # the handle of an _AttemptCounter actor
    tries: int

    @classmethod
    def create(cls, ray, tries: int) -> BatchAttempts:
        # Restarted if its node goes (its counts start again: the bound only loosens).
        return cls(ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_AttemptCounter).remote(), tries)

    @staticmethod
    def key(paths: list[str]) -> str:
        return hashlib.sha256("\0".join(paths).encode("utf-8", "surrogateescape")).hexdigest()

    def start(self, paths: list[str]) -> bool:
        """Count a start of this batch; False when it has had its tries (give it up)."""
        import ray

        started: int = ray.get(self.counter.start.remote(self.key(paths)))  # pyright: ignore[reportAssignmentType]
        return started <= self.tries

    def finish(self, paths: list[str]) -> None:
        self.counter.finish.remote(self.key(paths))  # no wait: the count only matters while it runs

    def lost_error(self, path: str) -> str:
        return f"{path}: lost: the workers restoring its batch died {self.tries} times"


def _map_batches(ds, stage: type, options: RestoreOptions, out: Location, settings: RaySettings,
                 attempts: BatchAttempts | None):
    from ray.data import ActorPoolStrategy

    pool = settings.actors
    # One batch per actor at a time: a worker that dies takes only the batch it was restoring with
    # it (queued ones would use up their retries too); the stage reads its own inputs, so queueing
    # would prefetch nothing.
    if isinstance(pool, int):
        compute = ActorPoolStrategy(size=pool, max_tasks_in_flight_per_actor=1)
    else:
        compute = ActorPoolStrategy(min_size=pool[0], max_size=pool[1], max_tasks_in_flight_per_actor=1)
    # No Ray remote arguments beyond the named ones (Ray 2.60 deprecates the others): Ray Data's
    # defaults restart a dead actor and retry its batch, BatchAttempts bounds the retries.
    return ds.map_batches(stage, fn_constructor_kwargs=dict(options=options, output=out, batch_attempts=attempts),
                          batch_size=settings.files_per_batch, batch_format="pyarrow",
                          compute=compute, num_cpus=settings.cpus_per_actor,
                          num_gpus=settings.gpus_per_actor or None)


def run_ray(inputs: list[str], output: str | os.PathLike | Location, options: RestoreOptions, settings: RaySettings,
            *, stems: dict[str, str] | None = None, stage: type = FaceRestore,
            on_row: Callable[[dict, RayRunSummary], None] | None = None,
            on_note: Callable[[str], None] | None = None) -> RayRunSummary:
    """Restore ``inputs`` into ``output`` on Ray; returns (and writes) the run's summary.

    ``stage``: the map_batches class (a subclass of :class:`FaceRestore`); ``on_row`` is called
    with each finished row (a dict of :data:`~facerestore.ray.stage.OUTPUT_COLUMNS` less the
    bytes) and the running totals, in the driver. A KeyboardInterrupt (Ctrl-C, or raised by
    ``on_row``) stops the run; the summary says ``interrupted``.
    """
    import ray

    options.replace(device="cpu").validate()  # the driver may have no GPU: the actors check the device
    out = output if isinstance(output, Location) else Location(output)
    if not out.remote:
        from facerestore.pipeline.batch import check_no_clash

        check_no_clash([Path(p) for p in inputs if not is_uri(p)], out.path)
    out.check_writable()
    _remove_stale_temporaries(out, on_note)  # a killed worker's, from an earlier run
    stems = stems if stems is not None else output_stems(inputs, on_note)
    summary = RayRunSummary(inputs=len(inputs))
    start = time.perf_counter()
    todo = pending_inputs(inputs, out, options, stems)
    summary.skipped_complete = len(inputs) - len(todo)
    started_here = False
    if todo:
        if not ray.is_initialized():
            ray.init(address=settings.address, **_init_defaults(settings))
            started_here = True
        try:
            _stream(ray, todo, out, options, settings, stems, stage, summary, on_row)
        finally:
            if started_here:
                ray.shutdown()
        if not summary.interrupted:  # the pool has stopped: what a worker that died was writing is stale
            _remove_stale_temporaries(out, on_note, older_than_s=0.0)
    summary.seconds = time.perf_counter() - start
    summary.summary_path = _write_summary(out, summary)
    return summary


def _remove_stale_temporaries(out: Location, on_note: Callable[[str], None] | None,
                              older_than_s: float | None = None) -> None:
    """Remove the hidden ``.NAME.HEX.tmp`` files that killed workers left in a local output folder
    (only those names, see :func:`facerestore.pipeline.batch.remove_stale_temporaries_in`). At the
    start, only those older than a live write can be; at the end of a run that finished, every one,
    since its workers have stopped (a Ray run is its output folder's only writer). Elsewhere than
    a local folder, object stores have no temporary files and other file systems keep theirs."""
    if out.remote:
        return
    from facerestore.pipeline.batch import STALE_TEMPORARY_AGE_S, remove_stale_temporaries_in

    age = STALE_TEMPORARY_AGE_S if older_than_s is None else older_than_s
    removed = remove_stale_temporaries_in(out.path, age)
    if removed and on_note is not None:
        on_note(f"removed {len(removed)} temporary file(s) that an interrupted run or a killed worker left in {out}")


def _init_defaults(settings: RaySettings) -> dict:
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "warning", "log_to_driver": True}
    if settings.address is None:  # a local cluster: enough logical CPUs for the pool and Ray Data's own tasks
        pool = settings.actors if isinstance(settings.actors, int) else max(settings.actors)
        kwargs["num_cpus"] = max(os.cpu_count() or 1, int(pool * settings.cpus_per_actor) + 2)
    kwargs.update(settings.init_kwargs)
    return kwargs


def _stream(ray, todo: list[str], out: Location, options: RestoreOptions, settings: RaySettings,
            stems: dict[str, str], stage: type, summary: RayRunSummary, on_row) -> None:
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.enable_progress_bars, context.max_errored_blocks)
    # Our own progress line; a batch that exhausted its retries is dropped (its photos are
    # recorded as failed below) instead of failing the whole run.
    context.enable_progress_bars, context.max_errored_blocks = False, -1
    seen: set[str] = set()
    cpus_free_before = ray.available_resources().get("CPU", 0.0)
    attempts = BatchAttempts.create(ray, settings.task_retries + 1)
    try:
        # Blocks of whole batches, enough for every actor to have work, few enough to keep the
        # driver's bookkeeping small on a million photos.
        pool = settings.actors if isinstance(settings.actors, int) else max(settings.actors)
        batches = -(-len(todo) // settings.files_per_batch)
        blocks = max(1, min(len(todo), max(batches, 2 * pool) if batches < 10_000 else 10_000))
        ds = ray.data.from_items([{"path": p, "stem": stems[p]} for p in todo], override_num_blocks=blocks)
        ds = _map_batches(ds, stage, options, out, settings, attempts).drop_columns(["output_bytes"])
        batches = iter(ds.iter_batches(batch_size=None, batch_format="pyarrow"))
        try:
            for batch in batches:
                for row in batch.to_pylist():
                    if row["path"] in seen:  # a retried batch's row that an earlier attempt reported
                        continue
                    seen.add(row["path"])
                    _count(row, summary)
                    if on_row is not None:
                        on_row(row, summary)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            # Stop the pool now (Ray Data kills its actors when the iteration ends early): actors
            # left running would go on writing while a restarted run restores the same photos.
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        if summary.interrupted:
            _wait_for_release(ray, cpus_free_before)
    finally:
        context.enable_progress_bars, context.max_errored_blocks = saved
        with contextlib.suppress(Exception):  # a lost cluster: nothing left to stop
            ray.kill(attempts.counter)
    if not summary.interrupted:
        # A batch whose task failed without an answer (the stage reports those it gives up).
        lost = [path for path in todo if path not in seen]
        # A dropped batch's photos that an attempt finished before its worker died are done.
        still_missing = set(pending_inputs(lost, out, options, stems))
        for path in lost:
            if path not in still_missing:
                _count({"path": path, "status": "complete", "faces": 0}, summary)
            else:
                summary.failed.append({"file": path, "error": f"{path}: lost: its batch failed on the cluster "
                                                              "(Ray's log says why)"})


def _wait_for_release(ray, cpus_free_before: float, timeout: float = 30.0) -> None:
    """Wait until the killed actors have given their CPUs back, i.e. their processes are gone
    and write nothing more (ray.kill returns before that). Bounded: on a busy shared cluster
    other jobs may hold the CPUs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0.0) < cpus_free_before:
        time.sleep(0.1)


def _count(row: dict, summary: RayRunSummary) -> None:
    if row["status"] == "failed":
        summary.failed.append({"file": row["path"], "error": row["error"]})
        return
    # "complete": an attempt of this run that died after writing it (inputs complete before the
    # run were not submitted), so it is restored, once.
    summary.restored += 1
    summary.faces += int(row["faces"] or 0)
    summary.restored_files.append(row["path"])


def _write_summary(out: Location, summary: RayRunSummary) -> str:
    """The summary as one shard of one (``summary-shard00000-of00001.json``), which
    ``facerestore summarize`` reads beside those of static shards."""
    summary.finished_at = time.time()
    data = asdict(summary)
    del data["summary_path"]  # not a shard summary's key
    data["engine"] = "ray"
    return out.write_bytes(Shard().summary_name, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
