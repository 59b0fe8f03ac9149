"""Where a Ray run reads and writes: a local folder, or any URI that pyarrow's file systems open
(``s3://``, ``gs://``, ``abfs://``, ``hdfs://``, ... where their packages are installed).

Writes are atomic per photo as in the CLI's batch: locally through :class:`~facerestore.io.atomic.StagedFiles`
(hidden temporary files renamed into place only when the whole group is written). Elsewhere
each file appears complete or not at all (an object store's upload; on other file systems a
hidden temporary name and a rename), and the files of a group are written in order, the pasted
image last, so its presence still means the group is complete.
"""
from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import secrets
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from facerestore.io.atomic import StagedFiles, atomic_write_bytes
from facerestore.io.images import IMAGE_EXTENSIONS

__all__ = ["Location", "is_uri", "read_bytes"]

# pyarrow file systems whose objects appear whole or not at all (a PUT / a completed upload).
_WHOLE_OBJECTS = frozenset({"s3", "gcs", "abfs"})


def is_uri(text: str) -> bool:
    """``s3://bucket/key`` and the like; ``file://`` and plain paths are local."""
    return "://" in str(text) and not str(text).startswith("file://")


def _local(text: str) -> Path:
    return Path(str(text).removeprefix("file://"))


class Location:
    """A folder named by a local path or a URI. Names below it are POSIX relative paths
    (``restored_imgs/a.png``); :meth:`uri` gives the full path or URI of one."""

    def __init__(self, where: str | os.PathLike, filesystem=None) -> None:
        self.text = os.fspath(where)
        self.remote = is_uri(self.text) or filesystem is not None
        if filesystem is not None:  # a pyarrow file system given as such (tests, custom credentials)
            self.fs, self.root, self.scheme = filesystem, self.text.rstrip("/"), filesystem.type_name
        elif self.remote:
            from pyarrow import fs as pafs

            try:
                self.fs, self.root = pafs.FileSystem.from_uri(self.text)
            except Exception as exc:  # an unknown scheme, or a file system whose package is absent
                raise ValueError(f"{self.text}: pyarrow cannot open this location ({exc}); install the "
                                 "file system's package (s3fs/gcsfs are not needed: pyarrow has S3 and GCS "
                                 "built in) or give a local folder") from None
            self.root = self.root.rstrip("/")
            self.scheme = self.text.split("://", 1)[0]
        else:
            self.path = _local(self.text)

    def __reduce__(self):  # pickled as its text: each Ray worker opens the file system itself
        return (Location, (self.text,)) if not self.remote or is_uri(self.text) else (Location, (self.text, self.fs))

    def __str__(self) -> str:
        return self.text

    def uri(self, name: str) -> str:
        if self.remote:
            inner = posixpath.join(self.root, name)
            return f"{self.scheme}://{inner}" if is_uri(self.text) else inner
        return str(self.path / name)

    # ------------------------------------------------------------------ reading

    def list_images(self) -> list[str]:
        """The image files directly in this folder (by extension, hidden ones skipped, sorted)."""
        if not self.remote:
            from facerestore.io.images import scan_inputs

            return [str(p) for p in scan_inputs(self.path).files]
        from pyarrow import fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=False))
        names = [PurePosixPath(i.path).name for i in infos if i.type == pafs.FileType.File]
        return sorted(self.uri(n) for n in names
                      if not n.startswith(".") and PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS)

    def is_file(self) -> bool:
        if not self.remote:
            return self.path.is_file()
        from pyarrow import fs as pafs

        return self.fs.get_file_info(self.root).type == pafs.FileType.File

    def names_in(self, folder: str) -> set[str]:
        """The file names in ``folder`` (one listing: resume checks a million photos with it)."""
        if not self.remote:
            try:
                return {p.name for p in (self.path / folder).iterdir()}
            except (FileNotFoundError, NotADirectoryError):
                return set()
        from pyarrow import fs as pafs

        selector = pafs.FileSelector(posixpath.join(self.root, folder), allow_not_found=True)
        return {PurePosixPath(i.path).name for i in self.fs.get_file_info(selector)}

    def exists(self, name: str) -> bool:
        if not self.remote:
            return (self.path / name).is_file()
        from pyarrow import fs as pafs

        return self.fs.get_file_info(posixpath.join(self.root, name)).type == pafs.FileType.File

    # ------------------------------------------------------------------ writing

    def check_writable(self) -> None:
        """Fail before any work when the folder cannot be written to."""
        if self.remote:
            self.fs.create_dir(self.root, recursive=True)
            return
        from facerestore.pipeline.options import check_output_folder

        check_output_folder(self.path)

    def write_group(self, files: Iterable[tuple[str, bytes]]) -> list[str]:
        """Write one photo's outputs so that they appear together (local) or in order, the last
        one the completion marker (object stores); returns their paths/URIs."""
        files = list(files)
        if not self.remote:
            with StagedFiles() as staged:
                for name, data in files:
                    staged.add(self.path / name, data)
                return [str(p) for p in staged.commit()]
        for name, data in files:
            self.write_bytes(name, data)
        return [self.uri(name) for name, _ in files]

    def write_bytes(self, name: str, data: bytes) -> str:
        if not self.remote:
            return str(atomic_write_bytes(self.path / name, data))
        target = posixpath.join(self.root, name)
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        if self.fs.type_name in _WHOLE_OBJECTS:  # an object appears whole when its upload completes
            with self.fs.open_output_stream(target) as stream:
                stream.write(data)
            return self.uri(name)
        # A file system (HDFS, a local one given as such): a hidden temporary name, then a rename.
        folder, base = posixpath.split(target)
        temporary = posixpath.join(folder, f".{base[:32]}.{secrets.token_hex(6)}.tmp")
        try:
            with self.fs.open_output_stream(temporary) as stream:
                stream.write(data)
            self.fs.move(temporary, target)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.delete_file(temporary)
            raise
        return self.uri(name)


@functools.lru_cache(maxsize=64)
def _folder_fs(folder_uri: str):
    """(file system, inner path) of a folder URI: opening an S3/GCS file system costs a
    configuration lookup, so it is done once per folder and process, not once per photo."""
    from pyarrow import fs as pafs

    return pafs.FileSystem.from_uri(folder_uri)


def read_bytes(path: str) -> bytes:
    """The bytes of one input, a local path or a URI."""
    if not is_uri(path):
        return _local(path).read_bytes()
    folder, name = path.rsplit("/", 1)
    filesystem, inner = _folder_fs(folder)
    with filesystem.open_input_stream(posixpath.join(inner, name)) as stream:
        return stream.read()
