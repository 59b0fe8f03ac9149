"""Files that appear complete or not at all.

Every file facerestore writes (images, checkpoints, reports, downloads) goes through here: the
bytes go to a hidden temporary file in the target's folder, are flushed to disk, and are renamed
over the target with ``os.replace``, so a reader, a crash or Ctrl-C sees either the old file or
the complete new one. :class:`StagedFiles` does the same for a group of files (the outputs of one
photo): nothing is renamed until every file of the group is on disk, and a failure before that
leaves every existing file exactly as it was.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["StagedFiles", "atomic_path", "atomic_write_bytes", "atomic_write_text", "is_temporary_name",
           "remove_stale_temporaries", "temporary_path"]

# temporary_path's names with the default suffix: "." + up to 32 characters of the target's
# name + "." + 12 hex digits + ".tmp". Nothing else is ever taken for one of ours.
_TEMPORARY_NAME = re.compile(r"\.(.{1,32})\.[0-9a-f]{12}\.tmp", re.DOTALL)


def temporary_path(target: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name beside ``target`` (same file system, so the rename is atomic).

    Hidden so that folder listings (``list_images``) skip it; short enough for any name limit.
    """
    return target.with_name(f".{target.name[:32]}.{secrets.token_hex(6)}{suffix}")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`temporary_path`'s (default suffix) names."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def remove_stale_temporaries(folders: Iterable[str | os.PathLike], older_than_s: float = 0.0) -> list[Path]:
    """Remove the temporary files a killed writer left directly in ``folders`` (only names of
    :func:`temporary_path`'s form, only plain files, not followed into sub-folders), those last
    modified at least ``older_than_s`` seconds ago; returns what was removed.

    A live writer's temporary file exists for the seconds its group takes to write: with a
    margin of minutes, a run can clean a folder that other processes (static shards) are
    writing to. Missing folders and files removed meanwhile are skipped.
    """
    cutoff = time.time() - older_than_s
    removed = []
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if not is_temporary_name(entry.name):
                continue
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime <= cutoff:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except FileNotFoundError:
                continue
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); best effort, as some file systems refuse."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    # O_EXCL: never write through someone else's file or link; 0o666 & umask like a normal file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s content to (by any library); on success it
    is renamed over ``target``, on any exception it is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(target, suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(target.parent)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (parent folders are created)."""
    target = Path(target)
    with atomic_path(target) as tmp:
        _write_new(tmp, data)
    return target


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


class StagedFiles:
    """Write a group of files so that a failure part-way changes nothing on disk.

    >>> with StagedFiles() as staged:
    ...     staged.add(out / "a.png", png_bytes)
    ...     staged.add(out / "b.png", other_bytes)
    ...     staged.commit()          # only now do a.png and b.png replace what was there

    Leaving the block without :meth:`commit` (an exception, Ctrl-C) removes the staged temporary
    files and leaves every target as it was, including the results of an earlier run.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []  # (temporary, target)
        self.committed: list[Path] = []

    def add(self, target: str | os.PathLike, data: bytes) -> None:
        target = Path(target)
        if target.is_dir():
            raise IsADirectoryError(f"{target} is a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(target)
        _write_new(tmp, data)
        self._staged.append((tmp, target))

    def commit(self) -> list[Path]:
        """Rename every staged file over its target; returns the targets."""
        folders = set()
        while self._staged:
            tmp, target = self._staged[0]
            os.replace(tmp, target)
            self._staged.pop(0)
            self.committed.append(target)
            folders.add(target.parent)
        for folder in folders:
            fsync_dir(folder)
        return self.committed

    def discard(self) -> None:
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._staged.clear()

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()
