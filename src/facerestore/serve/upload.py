"""Reading one multipart upload ourselves: size limit while streaming, one file, into our folder.

Starlette's ``request.form()`` has no size limit for files and spools them to the system's
temporary folder; here the body is read chunk by chunk, counted against the limit as it arrives
(413 as soon as it is passed, whatever ``Content-Length`` said), the single file part is written
into the request's own folder (removed by the caller), and form fields are small and few.

A client that stops sending (or trickles) must not hold the request open for ever: each read
waits at most ``timeout`` seconds, and after the first ``timeout`` seconds the body must keep
coming at ``min_rate`` bytes per second on average (408 otherwise).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterable, AsyncIterator, BinaryIO, Mapping

FILE_FIELD = "image"
UPLOAD_NAME = "upload"  # the file's name on disk; the client's file name is never used as a path


class UploadError(Exception):
    """A request body we will not use; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None  # the uploaded file, inside the request's folder
    filename: str = "image"  # as the client named it, for messages only
    size: int = 0
    seconds: float = 0.0


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


class _Reader:
    def __init__(self, folder: Path, max_file_bytes: int, max_fields: int, max_field_bytes: int) -> None:
        self.folder = folder
        self.max_file_bytes = max_file_bytes
        self.max_fields = max_fields
        self.max_field_bytes = max_field_bytes
        self.upload = Upload()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._data = bytearray()
        self._file: BinaryIO | None = None
        self._in_file = False

    # python-multipart callbacks -------------------------------------------------------------
    def on_part_begin(self) -> None:
        self._disposition = b""
        self._data = bytearray()
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        if len(self._header_value) > 4096:
            raise UploadError(400, "a part header of the multipart body is too long")

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._disposition)
        if b"name" not in params:
            raise UploadError(400, "a part of the multipart body has no field name")
        self._name = params[b"name"].decode("utf-8", "replace")
        upload = self.upload
        if b"filename" in params:
            if upload.path is not None:
                raise UploadError(400, "send one image per request", field=self._name)
            if self._name != FILE_FIELD:
                raise UploadError(422, f"unexpected file field '{self._name}'; send the image in a field "
                                       f"named '{FILE_FIELD}' (curl -F {FILE_FIELD}=@photo.jpg)", field=self._name)
            upload.filename = params[b"filename"].decode("utf-8", "replace").replace("\\", "/").split("/")[-1] or "image"
            upload.path = self.folder / UPLOAD_NAME
            self._file = open(upload.path, "xb")
            self._in_file = True
        else:
            if self._name == FILE_FIELD:
                raise UploadError(422, f"'{FILE_FIELD}' must be a file (curl -F {FILE_FIELD}=@photo.jpg)",
                                  field=FILE_FIELD)
            if self._name in upload.fields:
                raise UploadError(422, f"field '{self._name}' is given twice", field=self._name)
            if len(upload.fields) >= self.max_fields:
                raise UploadError(400, f"too many form fields (at most {self.max_fields})")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.upload.size += end - start
            if self.upload.size > self.max_file_bytes:
                raise UploadError(413, f"the image is larger than this server's limit of "
                                       f"{_megabytes(self.max_file_bytes)}", field=FILE_FIELD)
            assert self._file is not None
            self._file.write(data[start:end])
        else:
            self._data += data[start:end]
            if len(self._data) > self.max_field_bytes:
                raise UploadError(422, f"field '{self._name}' is too long", field=self._name)

    def on_part_end(self) -> None:
        if self._in_file:
            assert self._file is not None
            self._file.close()
            self._file = None
            self._in_file = False
        else:
            self.upload.fields[self._name] = self._data.decode("utf-8", "replace")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def _chunks(stream: AsyncIterable[bytes], timeout: float | None, min_rate: float) -> AsyncIterator[bytes]:
    """``stream``'s chunks, each waited for at most ``timeout`` seconds and, counted from the
    start, no later than ``timeout + received / min_rate`` seconds (a minimum average rate with a
    grace of ``timeout``); :class:`UploadError` 408 when one does not come in time."""
    if timeout is None:
        async for chunk in stream:
            yield chunk
        return
    start = time.monotonic()
    received = 0
    chunks = aiter(stream)
    while True:
        wait = timeout
        if min_rate > 0:
            wait = min(wait, start + timeout + received / min_rate - time.monotonic())
        try:
            chunk = await asyncio.wait_for(anext(chunks), max(wait, 0.0))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            seconds = time.monotonic() - start
            raise UploadError(408, f"the upload came too slowly ({received} bytes in {seconds:.0f} s; this server "
                                   f"waits {timeout:g} s at most for more and needs {min_rate / 1024:g} KB/s)") from None
        received += len(chunk)
        yield chunk


async def read_upload(headers: Mapping[str, str], stream: AsyncIterable[bytes], folder: Path, *,
                      max_file_bytes: int, max_fields: int = 16, max_field_bytes: int = 1024,
                      timeout: float | None = None, min_rate: float = 0.0) -> Upload:
    """Read a ``multipart/form-data`` body into ``folder``; raise :class:`UploadError` for any
    body we refuse. The file must be the field ``image``; other fields are returned as text.
    ``timeout`` and ``min_rate`` (bytes/s) bound how slowly the body may come (see the module)."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    start = time.perf_counter()
    content_type, params = parse_options_header(headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        raise UploadError(415, f"send the image as multipart/form-data in a field named '{FILE_FIELD}' "
                               f"(curl -F {FILE_FIELD}=@photo.jpg)")
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "the multipart Content-Type has no boundary")
    # The whole body may hold the file plus a few small fields and the part headers.
    max_body = max_file_bytes + max_fields * (max_field_bytes + 512) + 8192
    declared = headers.get("content-length")
    if declared is not None:
        try:
            declared_bytes = int(declared)
        except ValueError:
            raise UploadError(400, "Content-Length is not a number") from None
        if declared_bytes > max_body:
            raise UploadError(413, f"the upload is larger than this server's limit of {_megabytes(max_file_bytes)}",
                              field=FILE_FIELD)

    reader = _Reader(folder, max_file_bytes, max_fields, max_field_bytes)
    callbacks = {name: getattr(reader, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
        "on_header_end", "on_headers_finished")}
    try:
        parser = MultipartParser(boundary, callbacks)
    except FormParserError as exc:  # e.g. a boundary over the parser's 256 characters (RFC 2046 allows 70)
        raise UploadError(400, f"the multipart boundary is not usable: {exc}") from None
    received = 0
    try:
        async for chunk in _chunks(stream, timeout, min_rate):
            received += len(chunk)
            if received > max_body:  # also catches a body longer than its Content-Length claimed
                raise UploadError(413, f"the upload is larger than this server's limit of "
                                       f"{_megabytes(max_file_bytes)}", field=FILE_FIELD)
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise UploadError(400, "the multipart body is malformed or cut short") from None
    finally:
        reader.close()
    upload = reader.upload
    if upload.path is None:
        raise UploadError(422, f"no image: send the photo in a field named '{FILE_FIELD}' "
                               f"(curl -F {FILE_FIELD}=@photo.jpg)", field=FILE_FIELD)
    if reader._in_file:  # the body ended inside the file part
        raise UploadError(400, "the multipart body is cut short", field=FILE_FIELD)
    if upload.size == 0:
        raise UploadError(422, "the uploaded image is empty", field=FILE_FIELD)
    upload.seconds = time.perf_counter() - start
    return upload
