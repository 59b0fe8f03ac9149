"""Sharded runs: processes split the inputs with no file done twice or missed; a killed run resumes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facerestore import cli
from facerestore.models import zoo
from facerestore.pipeline.options import OptionsError, RestoreOptions
from facerestore.pipeline.shard import (Shard, already_complete, merge_summaries, parse_shard, shard_from_env,
                                        take_shard)



def _photos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = folder / f"p{i:02d}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env.update({zoo.CACHE_ENV: str(tmp_path / "cache"), zoo.OFFLINE_ENV: "1", "OMP_NUM_THREADS": "1"}, **extra)
    return env


def _command(inp: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "facerestore", "restore", "-i", str(inp), "-o", str(out), "--model", str(ckpt),
            "--detector", "mtcnn", "--parser", "none", "--bg_upsampler", "none", "-s", "1", *extra]


def test_shards_partition_the_inputs():
    files = [Path(f"/x/{i}.png") for i in range(11)]
    shares = [take_shard(files[::-1], Shard(i, 3)) for i in range(3)]  # order of listing does not matter
    assert sorted(p for share in shares for p in share) == sorted(files)
    assert sum(len(s) for s in shares) == 11 and {len(s) for s in shares} == {3, 4}


def test_shard_from_launcher_environment():
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "4"}) == Shard(1, 4)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}) == Shard(2, 3)
    assert shard_from_env({}) is None
    with pytest.raises(OptionsError):
        shard_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(OptionsError, match="--shard"):
        parse_shard("1-4")


def test_a_rank_without_its_world_size_is_an_error_not_ignored():
    """Issue 14, finding 10: RANK without WORLD_SIZE was ignored, so every process did every input."""
    for env in ({"RANK": "1"}, {"RANK": "0"}, {"WORLD_SIZE": "4"}, {"SLURM_ARRAY_TASK_ID": "3"}):
        with pytest.raises(OptionsError, match="--shard") as err:
            shard_from_env(env)
        assert all(key in str(err.value) for key in env)
    # a single SLURM task (SLURM_PROCID=0 with no SLURM_NTASKS) is an ordinary, unsharded run
    assert shard_from_env({"SLURM_PROCID": "0"}) is None


def test_two_processes_split_a_folder(tiny_checkpoint, tmp_path):
    files = _photos(tmp_path / "in", 6)
    out = tmp_path / "out"
    procs = [subprocess.Popen(_command(tmp_path / "in", out, tiny_checkpoint),
                              env=_env(tmp_path, RANK=str(rank), WORLD_SIZE="2"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(2)]
    for proc in procs:
        output, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, output
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("summary-shard*.json"))]
    assert [s["shard"] for s in summaries] == ["0/2", "1/2"]
    done = [f for s in summaries for f in s["restored_files"]]
    assert sorted(done) == sorted(str(f) for f in files)  # each file once, none missed
    assert sorted(p.name for p in (out / "restored_imgs").iterdir()) == [f.name for f in files]

    assert cli.main(["summarize", str(out)]) == 0
    total = json.loads((out / "summary.json").read_text())
    assert (total["inputs"], total["restored"], total["missing_shards"]) == (6, 6, [])


def test_a_killed_run_resumes(tiny_checkpoint, tmp_path):
    files = _photos(tmp_path / "in", 8)
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(tmp_path / "in", out, tiny_checkpoint, "--shard", "0/1"),
                            env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "restored_imgs").glob("*.png"))) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    complete_before = {p.name for p in (out / "restored_imgs").glob("*.png")}
    assert complete_before  # it got somewhere before the kill (or finished)

    result = subprocess.run(_command(tmp_path / "in", out, tiny_checkpoint, "--shard", "0/1"),
                            env=_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary-shard00000-of00001.json").read_text())
    assert summary["skipped_complete"] == len(complete_before)
    assert sorted(summary["restored_files"]) == sorted(str(f) for f in files if f.name not in complete_before)
    for f in files:  # every result is a whole, readable image
        img = cv2.imread(str(out / "restored_imgs" / f.name))
        assert img is not None and img.shape == (48, 40, 3)


def test_completeness_follows_the_output_naming(tmp_path):
    out = tmp_path / "out"
    (out / "restored_imgs").mkdir(parents=True)
    photo = tmp_path / "a.jpg"
    assert not already_complete(photo, out, RestoreOptions())
    (out / "restored_imgs" / "a.jpg").write_bytes(b"x")
    assert already_complete(photo, out, RestoreOptions())
    assert not already_complete(photo, out, RestoreOptions(suffix="v2"))
    assert not already_complete(photo, out, RestoreOptions(ext="png"))


def test_merge_reports_missing_and_interrupted_shards(tmp_path):
    for i, interrupted in ((0, False), (2, True)):
        (tmp_path / f"s{i}.json").write_text(json.dumps(
            {"shard": f"{i}/3", "inputs": 5, "skipped_complete": 1, "restored": 4, "faces": 2,
             "failed": [], "interrupted": interrupted, "seconds": 1.0}))
    total = merge_summaries(sorted(tmp_path.glob("s*.json")))
    assert (total["inputs"], total["restored"], total["faces"]) == (10, 8, 4)
    assert total["missing_shards"] == ["1/3"] and total["interrupted_shards"] == ["2/3"]


@pytest.mark.parametrize("content, words", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"inputs": 3}), "'shard'"),
    (json.dumps({"shard": "one of two"}), "'shard'"),
    (json.dumps({"shard": "1/2", "inputs": "many"}), "'inputs'"),
    (json.dumps({"shard": "1/2", "failed": [["a.png", "boom"]]}), "'failed'"),
    (json.dumps({"shard": "1/2", "seconds": None}), "'seconds'"),
])
def test_summarize_names_a_corrupt_shard_summary_and_what_is_wrong(tmp_path, capsys, content, words):
    """Issue 14, finding 9: a damaged summary gave `'shard'` or `'list' object has no attribute
    'get'` without the file's name."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary-shard00000-of00002.json").write_text(json.dumps(
        {"shard": "0/2", "inputs": 2, "restored": 2, "faces": 2, "failed": [], "interrupted": False}))
    bad = out / "summary-shard00001-of00002.json"
    bad.write_text(content)
    assert cli.main(["summarize", str(out)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert str(bad) in text and words in text, text
    total = json.loads((out / "summary.json").read_text())
    assert total["inputs"] == 2 and total["missing_shards"] == ["1/2"]  # the good shard still counts
    assert [u["file"] for u in total["unreadable"]] == [str(bad)]


def test_an_aligned_face_is_complete_only_when_its_last_output_is_there(tmp_path):
    out = tmp_path / "out"
    face = tmp_path / "f.png"
    options = RestoreOptions(aligned=True)
    (out / "restored_faces").mkdir(parents=True)
    (out / "restored_faces" / "f_00.png").write_bytes(b"x")  # killed before cmp/ was renamed
    assert not already_complete(face, out, options)
    (out / "cmp").mkdir()
    (out / "cmp" / "f_00.png").write_bytes(b"x")
    assert already_complete(face, out, options)
