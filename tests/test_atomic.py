"""io.atomic: a file appears complete or not at all; a group is all-or-nothing before commit."""
from pathlib import Path

import pytest

from facerestore.io.atomic import (
    StagedFiles,
    atomic_path,
    atomic_write_bytes,
    is_temporary_name,
    remove_stale_temporaries,
    temporary_path,
)


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


def test_only_our_stale_temporary_files_are_removed(tmp_path):
    import os
    import time

    long_name = "a_photo_with_a_name_longer_than_32_characters.png"
    ours = [temporary_path(tmp_path / "a.png"), temporary_path(tmp_path / long_name)]
    assert all(is_temporary_name(p.name) for p in ours)
    fresh = temporary_path(tmp_path / "b.png")  # a live writer's (another shard's), seconds old
    others = [".keep", ".a.png.tmp", ".a.png.0123456789AB.tmp", ".a.png.0123456789ab.tmp.x", "a.png.0123456789ab.tmp",
              ".a.png.0123456789ab.partial", "a.png"]
    for path in [*ours, fresh, *(tmp_path / name for name in others)]:
        path.write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    nested = temporary_path(tmp_path / "sub" / "c.png")  # a folder not named is not looked into
    nested.write_bytes(b"x")
    link = tmp_path / ".l.png.0123456789ab.tmp"
    link.symlink_to(tmp_path / "a.png")  # not a plain file: kept, its target too
    hour_ago = time.time() - 3600
    for path in [*ours, nested, *(tmp_path / name for name in others)]:
        os.utime(path, (hour_ago, hour_ago))
    removed = remove_stale_temporaries([tmp_path, tmp_path / "missing"], older_than_s=600)
    assert sorted(removed) == sorted(ours)
    assert _visible(tmp_path) == sorted([fresh.name, *others, "sub", link.name])
    assert nested.exists() and (tmp_path / "a.png").exists()
    assert remove_stale_temporaries([tmp_path]) == [fresh]  # no margin: every one of ours
