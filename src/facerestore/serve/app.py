"""The FastAPI application: the page at ``/``, the REST API under ``/v1``, health checks.

Errors are JSON ``{"detail": "...", "field": "..."}`` with a 4xx status for anything wrong with
a request (bad upload, bad option, too large) and 503 + ``Retry-After`` when the server is full;
5xx other than 503 means a bug in the server.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from .. import __version__
from .config import ServeConfig
from .limits import Busy, JobLimiter
from .service import FIELDS, RestoreResult, RestoreService, ServeError
from .upload import UploadError, read_upload

log = logging.getLogger("facerestore.serve")

# The page loads only its own files: no CDN, no inline script (so a CSP can say so).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "icon.svg": "image/svg+xml"}

_RESTORE_BODY = {
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["image"],
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "the photo (one file)"},
            "version": {"type": "string", "description": "official version: 1, 1.2, 1.3, 1.4, RestoreFormer"},
            "model": {"type": "string", "description": "a model name from GET /v1/models (instead of version)"},
            "upscale": {"type": "number", "default": 2, "description": "output scale, 1 to the server's maximum"},
            "weight": {"type": "number", "default": 0.5, "description": "0 = input face, 1 = fully restored"},
            "only_center_face": {"type": "boolean", "default": False},
            "aligned": {"type": "boolean", "default": False, "description": "the image is one aligned face"},
            "bg_upsampler": {"type": "string", "description": "none, or the server's background upsampler"},
            "format": {"type": "string", "enum": ["png", "jpeg", "webp"], "default": "png"},
            "quality": {"type": "integer", "default": 95, "description": "JPEG/WebP quality, 1-100"},
        }}}},
}
_RESTORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the restored image (or JSON with ?output=json); headers X-Faces, X-Face-Boxes, "
                         "Server-Timing",
          "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "application/json": {}}},
    400: {"description": "malformed multipart body, more than one file, a query option other than output"},
    413: {"description": "upload over the size limit, or image over the pixel limit"},
    415: {"description": "not multipart/form-data"},
    422: {"description": "missing image, not an image, truncated, bad option value"},
    503: {"description": "server busy (Retry-After) or model unavailable"},
}


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _safe_stem(filename: str) -> str:
    stem = Path(filename).stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:64].strip("._") or "image"


def _server_timing(timings: dict[str, float]) -> str:
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in timings.items())


def _json_payload(result: RestoreResult, model: str, options: Any) -> dict[str, Any]:
    """Everything the page shows, faces as PNG (built in the worker thread: encoding is work)."""
    from ..io.images import encode_image
    from ..pipeline.report import face_entry

    return {
        "faces": result.faces,
        "boxes": result.boxes,
        "face_records": [face_entry(record) for record in result.face_records],  # as in --report
        "model": model,
        "upscale": options.upscale,
        "weight": options.weight,
        "input": {"width": result.input_size[0], "height": result.input_size[1]},
        "output": {"width": result.output_size[0], "height": result.output_size[1],
                   "media_type": result.media_type, "ext": result.ext},
        "image": _b64(result.image),
        "cropped_faces": [_b64(encode_image(face, ".png")) for face in result.cropped_faces],
        "restored_faces": [_b64(encode_image(face, ".png")) for face in result.restored_faces],
        "notes": result.notes,
    }


def create_app(config: ServeConfig | None = None, **kwargs: Any) -> FastAPI:
    """The application for one server process: models are loaded once here and shared."""
    config = (config or ServeConfig()).replace(**kwargs) if kwargs else (config or ServeConfig())
    service = RestoreService(config)
    limiter = JobLimiter(config.max_concurrency, config.queue_size, config.queue_timeout, config.job_timeout,
                         max_uploads=config.max_uploads)

    def preload() -> None:
        try:
            service.load_default()
        except Exception:  # /readyz reports it; requests get 503 naming the cause
            log.exception("loading the default model failed")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if config.preload and not service.is_loaded():
            app.state.preload = asyncio.get_running_loop().run_in_executor(None, preload)
        yield
        limiter.shutdown()

    app = FastAPI(
        title="facerestore", version=__version__, lifespan=lifespan,
        description="Blind face restoration (the GFPGAN family). `POST /v1/restore` with a photo in the "
                    "multipart field `image`; the page at `/` does the same in a browser.")
    app.state.service = service
    app.state.limiter = limiter

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.field, exc.headers)

    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
        # The rest of a refused body is not read: close the connection rather than drain it.
        return _error(exc.status, str(exc), exc.field, {"Connection": "close"})

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy) -> JSONResponse:
        return _error(503, str(exc), None, {"Retry-After": str(exc.retry_after), "Connection": "close"})

    # ------------------------------------------------------------------ the page

    def _static(name: str) -> bytes:
        return resources.files(__package__).joinpath("static", name).read_bytes()

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(_static("index.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC:
            return _error(404, f"no such file: {name}")
        return Response(_static(name), media_type=STATIC[name], headers=PAGE_HEADERS)

    # ------------------------------------------------------------------ health

    @app.get("/healthz", tags=["health"], summary="the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="the default model is loaded",
             responses={503: {"description": "still loading, or loading failed (detail says why)"}})
    async def readyz() -> JSONResponse:
        if service.is_loaded():
            return JSONResponse({"ready": True, "model": service.default_model})
        detail = service.load_error or f"loading the model '{service.default_model}'"
        return JSONResponse({"ready": False, "detail": detail}, status_code=503, headers={"Retry-After": "5"})

    # ------------------------------------------------------------------ the API

    @app.get("/v1/models", tags=["restore"], summary="the models a request may choose, and the limits")
    async def models() -> dict[str, Any]:
        return service.describe_models()

    @app.post("/v1/restore", tags=["restore"], summary="restore the faces of one photo",
              openapi_extra={"requestBody": _RESTORE_BODY}, responses=_RESTORE_RESPONSES,
              response_class=Response)
    async def restore(request: Request, output: str = "image") -> Response:
        """Send the photo as the multipart field `image`; get the restored image back (PNG unless
        `format` says otherwise), or, with `?output=json`, the faces found (`face_records`, as in
        `facerestore restore --report`), timings, and base64 images (`image`, `cropped_faces`,
        `restored_faces`). Options are form fields; `output` is the only query option."""
        start = time.perf_counter()
        # A restoration option in the query would be silently ignored: refuse it, naming the fields.
        unknown = sorted(set(request.query_params) - {"output"})
        if unknown:
            raise ServeError(400, f"unknown query option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                                  f"only output (image or json) goes in the query; send restoration options as "
                                  f"form fields ({', '.join(f for f in FIELDS if f != 'image')})", field=unknown[0])
        if output not in ("image", "json"):
            raise ServeError(422, f"output: '{output}' is not one of image, json", field="output")
        limiter.check_room()  # a full server says so before the body is read
        folder = Path(tempfile.mkdtemp(prefix="facerestore-serve-", dir=config.tmp_dir))
        handed_over = False
        try:
            async with limiter.receiving():
                try:
                    upload = await read_upload(request.headers, request.stream(), folder,
                                               max_file_bytes=config.max_upload_bytes,
                                               max_fields=config.max_form_fields,
                                               max_field_bytes=config.max_field_bytes,
                                               timeout=config.upload_timeout, min_rate=config.upload_min_rate)
                except ClientDisconnect:
                    raise UploadError(400, "the client closed the connection during the upload") from None
            settings = service.parse_request(upload.fields)
            # A request takes a place only now that its body is complete: a stalled upload holds none.
            async with limiter.admit():
                queued_at = time.perf_counter()

                def job() -> tuple[RestoreResult, dict[str, float], bytes | None]:
                    waited = (time.perf_counter() - queued_at) * 1000
                    result = service.restore(upload.path, upload.filename, settings)
                    timings = {"upload": upload.seconds * 1000, "queue": waited, **result.timings}
                    body = None
                    if output == "json":  # base64 and JSON of a large image are work too: here, not on the loop
                        payload = _json_payload(result, settings.model, settings.options)
                        timings["total"] = (time.perf_counter() - start) * 1000
                        payload["timings_ms"] = {k: round(v, 1) for k, v in timings.items()}
                        body = json.dumps(payload, separators=(",", ":")).encode()
                    return result, timings, body

                handed_over = True  # from here the limiter removes the folder when the work is done
                result, timings, body = await limiter.run(
                    job, finally_=lambda: shutil.rmtree(folder, ignore_errors=True))
        finally:
            if not handed_over:
                shutil.rmtree(folder, ignore_errors=True)

        timings.setdefault("total", (time.perf_counter() - start) * 1000)
        headers = {
            "X-Faces": str(result.faces),
            "X-Face-Boxes": ";".join(",".join(f"{v:g}" for v in b["box"]) for b in result.boxes),
            "X-Model": settings.model,
            "X-Image-Size": f"{result.output_size[0]}x{result.output_size[1]}",
            "Server-Timing": _server_timing(timings),
            "Cache-Control": "no-store",
        }
        if body is not None:
            return Response(body, media_type="application/json", headers=headers)
        filename = f"{_safe_stem(upload.filename)}_restored{result.ext}"
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
        return Response(result.image, media_type=result.media_type, headers=headers)

    return app
