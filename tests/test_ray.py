"""`facerestore.ray` and `restore --engine ray` on a local Ray cluster that these tests start and
stop: the same bytes as the single-process CLI, a corrupt file, a worker killed mid-write, a
driver interrupted and started again. Skipped where Ray Data is not installed (extra `ray`)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the extra `ray` is not installed")
# Ray Data's own context warns about its deprecated settings when a dataset first runs.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"), pytest.mark.usefixtures("offline_zoo")]
TINY_FACE_SIZE = 64  # conftest's tiny_checkpoint at the serve tests' size: 64-px crops
pytest.importorskip("ray.data")

import facerestore  # noqa: E402
from facerestore import cli  # noqa: E402
from facerestore.models import zoo  # noqa: E402
from facerestore.pipeline.options import RestoreOptions  # noqa: E402
from facerestore.ray import FaceRestore, RaySettings, run_ray  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from serve_support import small_face_photo  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "photos"  # optional
MODEL_FLAGS = ["--detector", "mtcnn", "--parser", "none", "--bg_upsampler", "none", "--identity-model", "none",
               "--no-download", "-s", "2"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local cluster for this module: 4 logical CPUs (with 2, one actor and Ray Data's own
    tasks can wait on each other), no dashboard, offline workers that import this tree."""
    empty_cache = tmp_path_factory.mktemp("empty-cache")
    src = str(Path(facerestore.__file__).resolve().parents[1])
    env = {zoo.CACHE_ENV: str(empty_cache), zoo.OFFLINE_ENV: "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    ray.init(num_cpus=4, include_dashboard=False, logging_level="error", object_store_memory=200 * 2**20,
             runtime_env={"env_vars": env})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test stages below
    yield
    ray.shutdown()




def _options(checkpoint: Path, **changes) -> RestoreOptions:
    return RestoreOptions(model=str(checkpoint), detector="mtcnn", parser=None, bg_upsampler=None,
                          allow_download=False, identity_model=None, **changes)


def _photos(folder: Path, n: int, size: tuple[int, int] = (40, 32)) -> list[Path]:
    """Small images without faces: the detector passes over them quickly, the background is still
    upscaled and written, so every file has a result to compare."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        path = folder / f"p{i:02d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        paths.append(path)
    return paths


def _tree(folder: Path) -> dict[str, str]:
    """Every visible result file and its hash (the summary is not a result)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(("summary", "."))}


class JournalStage(FaceRestore):
    """Appends each photo it writes to ``OUTPUT/../journal`` (one line, O_APPEND), so a test
    sees which photos were written, by any attempt, how many times."""

    def restore_row(self, path, data=None, stem=None):
        row = super().restore_row(path, data, stem)
        if row.status == "restored":
            journal = Path(self.output.text).parent / "journal"
            with open(journal, "a") as f:
                f.write(Path(path).name + "\n")
        return row


class SlowJournalStage(JournalStage):
    """Half a second per photo, as a real model takes (more): the driver is interrupted while
    photos are still to do, not after the tiny model has done them all."""

    def restore_row(self, path, data=None, stem=None):
        import time

        time.sleep(0.5)
        return super().restore_row(path, data, stem)


class DiesWhileWriting(JournalStage):
    """The first time it writes ``p01.png``'s results, the worker process dies part-way: one of
    the group's files is staged, none is renamed into place."""

    def restore_row(self, path, data=None, stem=None):
        marker = Path(self.output.text).parent / "died-once"
        if Path(path).name == "p01.png" and not marker.exists():
            marker.write_text(str(os.getpid()))
            original = self.output.write_group

            def write_then_die(files):
                from facerestore.io.atomic import StagedFiles

                staged = StagedFiles()
                name, data = next(iter(files))
                staged.add(self.output.path / name, data)
                os._exit(1)  # noqa: SLF001  (a crash: no cleanup, no exception)

            self.output.write_group = write_then_die
            try:
                return super().restore_row(path, data, stem)
            finally:
                self.output.write_group = original
        return super().restore_row(path, data, stem)


def _journal(out: Path) -> list[str]:
    journal = out.parent / "journal"
    return sorted(journal.read_text().split()) if journal.exists() else []


# ----------------------------------------------------------------------------- no cluster needed


def test_the_stage_turns_bytes_into_the_cli_files_with_errors_per_row(tiny_checkpoint, tmp_path):
    paths = _photos(tmp_path / "in", 2)
    out = tmp_path / "cli"
    assert cli.main(["restore", "-i", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_checkpoint),
                     *MODEL_FLAGS]) == 0
    stage = FaceRestore(_options(tiny_checkpoint))
    batch = {"path": ["s3://bucket/broken.jpg"] + [f"s3://bucket/{p.name}" for p in paths],
             "bytes": [b"\xff\xd8 not really a jpeg"] + [p.read_bytes() for p in paths]}
    rows = stage(batch).to_pylist()
    assert [r["status"] for r in rows] == ["failed", "restored", "restored"]
    assert rows[0]["error"].startswith("s3://bucket/broken.jpg: ")
    for row in rows[1:]:
        assert row["output_names"] == [f"restored_imgs/{Path(row['path']).name}"]
        assert row["output_bytes"][0] == (out / row["output_names"][0]).read_bytes()
        assert (row["width"], row["height"], row["faces"]) == (40, 32, 0)


def test_a_batch_past_its_tries_is_not_restored_again_and_its_unfinished_photos_are_lost(tiny_checkpoint, tmp_path):
    paths = _photos(tmp_path / "in", 2)
    out = tmp_path / "out"
    (out / "restored_imgs").mkdir(parents=True)
    (out / "restored_imgs" / "p00.png").write_bytes(b"written by an earlier try")

    class GivenUp:  # what BatchAttempts answers for a batch whose workers died on every try
        finished = []

        def start(self, batch_paths):
            return False

        def finish(self, batch_paths):
            self.finished.append(batch_paths)

        def lost_error(self, path):
            return f"{path}: lost"

    attempts = GivenUp()
    stage = FaceRestore(_options(tiny_checkpoint), output=out, batch_attempts=attempts)
    rows = stage({"path": [str(p) for p in paths]}).to_pylist()
    assert [(r["status"], r["error"]) for r in rows] == [("complete", None), ("failed", f"{paths[1]}: lost")]
    assert attempts.finished == [[str(p) for p in paths]]
    assert sorted(p.name for p in (out / "restored_imgs").iterdir()) == ["p00.png"]  # nothing restored


def test_a_file_system_location_writes_whole_files_in_order_and_lists_them(tmp_path):
    from pyarrow import fs as pafs

    from facerestore.ray.storage import Location

    out = Location(str(tmp_path / "out"), filesystem=pafs.LocalFileSystem())
    written = out.write_group([("restored_faces/a_00.png", b"face"), ("restored_imgs/a.png", b"photo")])
    assert written == [str(tmp_path / "out" / "restored_faces/a_00.png"), str(tmp_path / "out" / "restored_imgs/a.png")]
    assert (tmp_path / "out" / "restored_imgs" / "a.png").read_bytes() == b"photo"
    assert out.names_in("restored_imgs") == {"a.png"} and out.names_in("cmp") == set()
    assert out.exists("restored_faces/a_00.png") and not out.exists("restored_imgs/b.png")
    assert not [p for p in (tmp_path / "out").rglob(".*")], "no temporary file is left"
    photos = Location(str(tmp_path / "out" / "restored_imgs"), filesystem=pafs.LocalFileSystem())
    assert photos.list_images() == [str(tmp_path / "out" / "restored_imgs" / "a.png")]


def test_inputs_from_a_list_file_and_only_incomplete_ones_pending(tmp_path):
    from facerestore.ray.driver import list_inputs, output_stems, pending_inputs
    from facerestore.ray.storage import Location

    (tmp_path / "list.txt").write_text("# photos\na.jpg\n/abs/b.png\ns3://bucket/c.jpg\n\nsub/a.png\n")
    inputs = list_inputs(tmp_path / "list.txt")
    assert inputs == [str(tmp_path / "a.jpg"), "/abs/b.png", "s3://bucket/c.jpg", str(tmp_path / "sub" / "a.png")]
    stems = output_stems(inputs)
    assert stems[str(tmp_path / "a.jpg")] == "a_jpg" and stems["s3://bucket/c.jpg"] == "c"
    out = tmp_path / "out"
    (out / "restored_imgs").mkdir(parents=True)
    (out / "restored_imgs" / "a_jpg.jpg").write_bytes(b"done")  # a.jpg is complete
    (out / "restored_imgs" / "c.png").write_bytes(b"done")  # c.jpg's result as PNG also counts
    pending = pending_inputs(inputs, Location(out), RestoreOptions(), stems)
    assert pending == ["/abs/b.png", str(tmp_path / "sub" / "a.png")]


def test_the_pool_takes_only_the_remote_arguments_ray_names(tmp_path):
    """Ray 2.60 deprecates every other remote argument of map_batches (``**ray_remote_args``,
    ``ray_remote_args_fn``: gone in Ray 2.64); the bound on retries is ours (BatchAttempts)."""
    import inspect

    from ray.data import Dataset

    from facerestore.ray.driver import BatchAttempts, _map_batches
    from facerestore.ray.storage import Location

    parameters = inspect.signature(Dataset.map_batches).parameters
    named = {n for n, p in parameters.items() if p.kind is not p.VAR_KEYWORD} - {"self", "ray_remote_args_fn"}

    class Recorded:
        def map_batches(self, fn, **kwargs):
            self.kwargs = kwargs
            return self

    attempts = BatchAttempts(counter=None, tries=4)
    for actors in (2, (1, 3)):
        ds = _map_batches(Recorded(), FaceRestore, RestoreOptions(), Location(tmp_path), RaySettings(actors=actors),
                          attempts)
        assert set(ds.kwargs) <= named, set(ds.kwargs) - named
        assert ds.kwargs["fn_constructor_kwargs"]["batch_attempts"] is attempts


def test_importing_the_stage_does_not_import_ray():
    import subprocess

    code = "import sys, facerestore.ray; print('ray' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(Path(facerestore.__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.strip() == "False"


def test_engine_ray_without_ray_installed_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert cli.main(["restore", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--engine", "ray"]) == 2
    assert "pip install 'facerestore[ray]'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- on the local cluster


def test_engine_ray_writes_the_same_bytes_as_the_single_process_cli(cluster, tiny_checkpoint, tmp_path):
    inp = tmp_path / "in"
    _photos(inp, 1)
    if PHOTOS.is_dir():  # a real photo, so that faces are found, restored and pasted
        (inp / "face.jpg").write_bytes(small_face_photo(PHOTOS, width=200))
    grey = np.random.default_rng(1).integers(0, 256, (30, 36), dtype=np.uint8)
    cv2.imwrite(str(inp / "grey.png"), grey)
    rgba = np.random.default_rng(2).integers(0, 256, (30, 36, 4), dtype=np.uint8)
    cv2.imwrite(str(inp / "rgba.png"), rgba)
    common = ["restore", "-i", str(inp), "--model", str(tiny_checkpoint), *MODEL_FLAGS]
    assert cli.main([*common, "-o", str(tmp_path / "local")]) == 0
    assert cli.main([*common, "-o", str(tmp_path / "ray"), "--engine", "ray", "--actors", "1"]) == 0
    local, on_ray = _tree(tmp_path / "local"), _tree(tmp_path / "ray")
    if PHOTOS.is_dir():
        assert any(name.startswith("restored_faces/face_") for name in local), "the photo's faces were found"
    assert len(local) >= 3 and on_ray == local
    summary = json.loads((tmp_path / "ray" / "summary-shard00000-of00001.json").read_text())
    count = len(list(inp.iterdir()))
    assert (summary["inputs"], summary["restored"], summary["failed"]) == (count, count, [])


def test_a_corrupt_file_is_recorded_and_the_others_are_done(cluster, tiny_checkpoint, tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    _photos(inp, 3)
    (inp / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code = cli.main(["restore", "-i", str(inp), "-o", str(out), "--model", str(tiny_checkpoint), *MODEL_FLAGS,
                     "--engine", "ray"])
    assert code == 1
    assert sorted(p.name for p in (out / "restored_imgs").iterdir()) == ["p00.png", "p01.png", "p02.png"]
    assert cli.main(["summarize", str(out)]) == 1  # it reads the Ray run's summary like a shard's
    printed = capsys.readouterr()
    assert "1 shards: 4 inputs, 3 restored, 0 already complete, 0 faces, 1 failed" in printed.out
    assert f"failed: {inp / 'corrupt.png'}" in printed.out
    assert "restoring: 4/4 photos, 1 failed" in printed.err and "photos/s" in printed.err


def test_a_worker_killed_while_writing_has_its_batch_retried_nothing_half_written_or_twice(
        cluster, tiny_checkpoint, tmp_path):
    import time
    import warnings

    inp, out = tmp_path / "in", tmp_path / "out"
    paths = _photos(inp, 4)
    # An earlier run's killed write (an hour old), and hidden files that are not our temporaries.
    stale = out / "restored_imgs" / ".p03.png.0123456789ab.tmp"
    kept = [out / ".hidden", out / "restored_imgs" / ".p03.png.tmp"]
    for path in [stale, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    notes = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_ray([str(p) for p in paths], out, _options(tiny_checkpoint),
                          RaySettings(actors=1, files_per_batch=4), stage=DiesWhileWriting, on_note=notes.append)
    deprecated = [str(w.message) for w in caught if "ray_remote_args" in str(w.message)
                  or "max_restarts" in str(w.message) or "max_task_retries" in str(w.message)]
    assert deprecated == []
    assert (tmp_path / "died-once").exists(), "the worker was killed"
    assert (summary.restored, summary.failed) == (4, [])
    visible = sorted(p.name for p in (out / "restored_imgs").iterdir() if not p.name.startswith("."))
    assert visible == [p.name for p in paths]
    # The crash left p01's staged file under a hidden temporary name, never under its own; the
    # driver removed it once the run was over, and the stale one at the start.
    assert list(out.rglob(".*.tmp")) == [kept[1]]
    assert not stale.exists() and all(p.exists() for p in kept)
    removals = [n.split()[1] for n in notes if n.startswith("removed ")]
    assert removals == ["1", "1"], notes  # the stale one at the start, p01's at the end
    # p00 was written before the crash (same batch as p01) and found complete by the retry, not redone.
    assert _journal(out) == [p.name for p in paths]


def test_an_interrupted_driver_started_again_restores_only_what_is_missing(cluster, tiny_checkpoint, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    paths = [str(p) for p in _photos(inp, 6)]
    settings = RaySettings(actors=1, files_per_batch=1)

    def interrupt(row, summary):
        raise KeyboardInterrupt

    first = run_ray(paths, out, _options(tiny_checkpoint), settings, stage=SlowJournalStage, on_row=interrupt)
    assert first.interrupted and first.restored == 1
    saved = json.loads((out / "summary-shard00000-of00001.json").read_text())
    assert saved["interrupted"] is True
    done_first = set(_journal(out))
    assert 1 <= len(done_first) < 6
    second = run_ray(paths, out, _options(tiny_checkpoint), settings, stage=JournalStage)
    assert not second.interrupted and second.failed == []
    assert second.skipped_complete == len(done_first)
    assert second.restored == 6 - len(done_first)
    assert _journal(out) == sorted(Path(p).name for p in paths)  # each photo written once in all


class AlwaysDiesOnP01(FaceRestore):
    """A poison file: every worker that reaches ``p01.png`` dies."""

    def restore_row(self, path, data=None, stem=None):
        if Path(path).name == "p01.png":
            os._exit(1)
        return super().restore_row(path, data, stem)


def test_a_file_that_keeps_killing_its_worker_is_recorded_lost_and_the_run_ends(cluster, tiny_checkpoint, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    paths = [str(p) for p in _photos(inp, 4)]  # batches [p00, p01], [p02, p03]
    summary = run_ray(paths, out, _options(tiny_checkpoint), RaySettings(actors=1, files_per_batch=2, task_retries=1),
                      stage=AlwaysDiesOnP01)
    # The batch of p01 is dropped after 2 tries; p00, written by its first try, still counts.
    assert [f["file"] for f in summary.failed] == [str(inp / "p01.png")]
    assert "lost: the workers restoring its batch died 2 times" in summary.failed[0]["error"]
    assert summary.restored == 3
    assert sorted(p.name for p in (out / "restored_imgs").glob("p*.png")) == ["p00.png", "p02.png", "p03.png"]
