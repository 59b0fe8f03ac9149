"""io.atomic: a file appears complete or not at all; a group is all-or-nothing before commit."""
from pathlib import Path

import pytest

from facerestore.io.atomic import StagedFiles, atomic_path, atomic_write_bytes


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert _visible(target.parent) == ["a.bin"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert _visible(tmp_path) == ["a.bin"]


def test_staged_group_is_untouched_until_commit(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"earlier run")
    with pytest.raises(KeyboardInterrupt):
        with StagedFiles() as staged:
            staged.add(a, b"new a")
            staged.add(b, b"new b")
            raise KeyboardInterrupt  # Ctrl-C after the work, before the commit
    assert a.read_bytes() == b"earlier run"  # the earlier result survives
    assert _visible(tmp_path) == ["a.png"]  # no temporary left, no half of the group

    with StagedFiles() as staged:
        staged.add(a, b"new a")
        staged.add(b, b"new b")
        assert staged.commit() == [a, b]
    assert (a.read_bytes(), b.read_bytes()) == (b"new a", b"new b")
    assert _visible(tmp_path) == ["a.png", "b.png"]


def test_staging_onto_a_folder_fails_before_anything_is_written(tmp_path):
    (tmp_path / "x.png").mkdir()
    with StagedFiles() as staged:
        with pytest.raises(IsADirectoryError):
            staged.add(tmp_path / "x.png", b"data")
    assert _visible(tmp_path) == ["x.png"]
