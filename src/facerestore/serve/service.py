"""The work behind the API: models loaded once and shared, one request restored in a thread.

Nothing here knows HTTP beyond :class:`ServeError`'s status code; :mod:`.app` turns results
and errors into responses. A request takes the CLI's road: read → ``Restorer.restore`` → compose
→ encode, with the server's :class:`~facerestore.pipeline.options.RestoreOptions` (the same
detector settings, colour match and identity scores as ``facerestore restore``), so the API and
the batch give the same faces and bytes for the same photo and options. Requests share loaded
networks: each gets :meth:`Restorer.with_options` of a cached Restorer with its own ``upscale``,
``weight`` and face choice, so no request changes what another one sees, and no weights are copied.

No response carries a server path: load errors are logged and answered with the model's name.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..pipeline.options import OptionsError, RestoreOptions, model_for_version
from .config import ServeConfig

log = logging.getLogger("facerestore.serve")

FORMATS = {"png": (".png", "image/png"), "jpeg": (".jpg", "image/jpeg"), "jpg": (".jpg", "image/jpeg"),
           "webp": (".webp", "image/webp")}
FIELDS = ("image", "version", "model", "upscale", "weight", "only_center_face", "aligned", "bg_upsampler",
          "format", "quality")
# RestoreOptions names options by their CLI flags; the API by its form fields.
_FIELD_OF_FLAG = {"-s/--upscale": "upscale", "-w/--weight": "weight", "-v/--version": "version"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
MIN_SIDE = 8  # smaller images have no face to find and trip detectors' pyramids


class ServeError(Exception):
    """A request we answer with ``status`` and a JSON ``{"detail": message, "field": field}``."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.headers = dict(headers or {})


@dataclass
class ModelSlot:
    """A face model a request may ask for."""

    name: str
    spec: Any  # what RestoreOptions.model gets: a zoo name or a file
    source: str  # "zoo" or "file"
    version: str | None = None  # the official -v value, for zoo models that have one
    architecture: str | None = None  # class name: the zoo's, or read from a file's tensors once checked


def weight_meaning(fidelity: bool) -> str:
    """What a request's ``weight`` means for a model (``/v1/models`` and the page's slider say it)."""
    return "fidelity: 0 = quality, 1 = fidelity" if fidelity else "blend: 0 = input face, 1 = fully restored"


@dataclass
class RestoreRequest:
    """One request's validated settings."""

    model: str
    bg_upsampler: str | None
    options: RestoreOptions
    ext: str
    media_type: str
    quality: int = 95


@dataclass
class RestoreResult:
    image: bytes
    ext: str
    media_type: str
    faces: int
    boxes: list[dict[str, Any]]
    face_records: list[Any]  # pipeline.restorer.FaceRecord, as the batch's report records them
    cropped_faces: list[np.ndarray]
    restored_faces: list[np.ndarray]
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds
    notes: list[str] = field(default_factory=list)


def _slot_for(spec: Any) -> ModelSlot:
    from ..models import zoo

    entry = zoo.find_entry(spec) if isinstance(spec, str) and not Path(spec).is_file() else None
    if entry is not None:
        version = next((a for a in entry.aliases if a[:1].isdigit()), None)
        return ModelSlot(entry.name, entry.name, "zoo", version, entry.arch)
    return ModelSlot(Path(spec).stem, spec, "file")


# Absolute paths (POSIX, home-relative, Windows) in texts that leave the server.
_PATH = re.compile(r"(?<![\w:/.])(?:~|/)[^\s'\"]*[^\s'\".,;:)]|\b[A-Za-z]:\\[^\s'\"]+")


def without_paths(text: str) -> str:
    """``text`` with file paths replaced by ``<path>``: what the server's files are called is
    none of a client's business."""
    return _PATH.sub("<path>", text)


def _bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ServeError(422, f"{name}: expected true or false, got '{value}'", field=name)


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ServeError(422, f"{name}: expected a number, got '{value}'", field=name) from None


class RestoreService:
    """Loaded models and the restoration of one uploaded file, for one server process."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config.validate()
        self.models = [_slot_for(spec) for spec in config.models]
        names = [m.name for m in self.models]
        if len(set(n.lower() for n in names)) != len(names):
            raise OptionsError("--model", f"two models share a name ({', '.join(names)}); rename a file")
        bg = self.config.restore.bg_upsampler  # "none" is None after validate()
        self.bg_name = _slot_for(bg).name if bg is not None else None
        self._cache: dict[tuple[str, str | None], Any] = {}
        self._locks: dict[tuple[str, str | None], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._shared_parts: dict[str, Any] = {}  # detector and parser, loaded once for every model
        self.load_notes: list[str] = []
        self.load_error: str | None = None

    # ------------------------------------------------------------------ models

    @property
    def default_model(self) -> str:
        return self.models[0].name

    def _slot(self, name: str) -> ModelSlot:
        for slot in self.models:
            if slot.name.lower() == name.lower():
                return slot
        raise KeyError(name)

    def is_loaded(self, model: str | None = None, bg: str | None = "default") -> bool:
        bg = self.bg_name if bg == "default" else bg
        return (model or self.default_model, bg) in self._cache

    def restorer(self, model: str, bg: str | None):
        """The loaded Restorer for a model and background choice, loading it on first use (once,
        whatever the number of threads asking)."""
        key = (model, bg)
        found = self._cache.get(key)
        if found is not None:
            return found
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._cache:
                return self._cache[key]
            from ..pipeline.restorer import Restorer

            defaults = self.config.restore
            # Every network is loaded once: a model asked for with and without the background
            # upsampler shares its face network; all models share the detector, parser, upsampler
            # and identity network.
            face_net = next((r.net for (m, _), r in list(self._cache.items()) if m == model), None)
            shared = self._shared_parts
            options = defaults.replace(
                model=face_net if face_net is not None else self._slot(model).spec,
                bg_upsampler=shared.get("upsampler", defaults.bg_upsampler) if bg else None,
                detector=shared.get("detector", defaults.detector), parser=shared.get("parser", defaults.parser),
                identity_model=shared.get("identity", defaults.identity_model), upscale=1.0, aligned=False)
            restorer = Restorer(options)
            self.load_notes.extend(n for n in restorer.notes if n not in self.load_notes)
            shared.setdefault("detector", restorer.detector)
            shared.setdefault("parser", restorer.parser)
            if restorer.identity is not None:
                shared.setdefault("identity", restorer.identity.net)
            if restorer.upsampler is not None:
                shared.setdefault("upsampler", restorer.upsampler)
            self._cache[key] = restorer
            return restorer

    def check_models(self) -> None:
        """Every model a request may ask for exists and is of the right kind, checked without
        loading it: :class:`OptionsError` naming the flag otherwise (``facerestore serve`` calls
        this before listening, so a bad second ``--model`` fails at start, not per request)."""
        from ..models.descriptor import Purpose
        from ..models.loading import CheckpointError, check_model

        allow = self.config.restore.allow_download
        wanted: list[tuple[str, Purpose, Any, ModelSlot | None]] = [
            ("--model", Purpose.FACE_RESTORATION, slot.spec, slot) for slot in self.models]
        bg = self.config.restore.bg_upsampler
        if bg is not None and not (isinstance(bg, str) and bg.lower() == "realesrgan"):
            wanted.append(("--bg_upsampler", Purpose.UPSCALING, bg, None))
        for flag, purpose, spec, slot in wanted:
            if not isinstance(spec, (str, Path)):
                continue  # a module given in Python: checked when loaded
            try:
                architecture = check_model(spec, purpose, flag, allow_download=allow)
                if slot is not None:  # /v1/models can then say what weight means before it is loaded
                    slot.architecture = architecture
            except CheckpointError as exc:
                message = str(exc)
                raise OptionsError(flag, message[len(flag) + 2:] if message.startswith(f"{flag}: ") else message
                                   ) from None

    def identify_models(self) -> None:
        """Read the architecture of each file model not known yet (``check_models`` records it), so
        that ``/v1/models`` says what ``weight`` means for every model before it is loaded. A file
        that cannot be read is left for its first request to report."""
        from ..models.descriptor import Purpose
        from ..models.loading import CheckpointError, check_model

        for slot in self.models:
            if slot.architecture is None and isinstance(slot.spec, (str, Path)):
                try:
                    slot.architecture = check_model(slot.spec, Purpose.FACE_RESTORATION, "--model",
                                                    allow_download=False)
                except (CheckpointError, OSError):
                    pass

    def load_default(self) -> None:
        """Load the default model (what ``/readyz`` waits for); errors are kept for ``/readyz``."""
        try:
            self.restorer(self.default_model, self.bg_name)
            self.load_error = None
        except Exception:
            # /readyz shows this: the model's name, never the server's paths (the log has the cause).
            self.load_error = f"the model '{self.default_model}' cannot be loaded on this server; its log says why"
            raise

    def describe_models(self) -> dict[str, Any]:
        from ..models import zoo
        from ..models.descriptor import license_of_architecture, takes_fidelity

        models = []
        for slot in self.models:
            loaded = next((r for (m, _), r in list(self._cache.items()) if m == slot.name), None)
            entry: dict[str, Any] = {"name": slot.name, "source": slot.source, "version": slot.version,
                                     "default": slot.name == self.default_model, "loaded": loaded is not None}
            zoo_entry = zoo.find_entry(slot.name) if slot.source == "zoo" else None
            if zoo_entry is not None:
                entry["license"] = zoo_entry.license
            if slot.architecture is not None:  # known before loading: from the zoo or the start-up check
                entry["architecture"] = slot.architecture
                entry["license"] = entry.get("license") or license_of_architecture(slot.architecture)
                entry["weight"] = weight_meaning(takes_fidelity(slot.architecture))
            if loaded is not None:
                entry["architecture"] = loaded.descriptor.architecture
                entry["face_size"] = loaded.face_size
                entry["license"] = loaded.descriptor.license or entry.get("license", "")
                entry["weight"] = weight_meaning(loaded.descriptor.takes_fidelity)
            models.append(entry)
        cfg = self.config
        return {
            "default": self.default_model,
            "models": models,
            "bg_upsamplers": ["none"] + ([self.bg_name] if self.bg_name else []),
            "default_bg_upsampler": self.bg_name or "none",
            "formats": ["png", "jpeg", "webp"],
            "device": cfg.device,
            "backend": cfg.restore.backend,
            "limits": {"max_upload_bytes": cfg.max_upload_bytes, "max_pixels": cfg.max_pixels,
                       "max_output_pixels": cfg.max_output_pixels, "max_upscale": cfg.max_upscale,
                       "max_concurrency": cfg.max_concurrency, "queue_size": cfg.queue_size},
            "notes": [without_paths(note) for note in self.load_notes],
        }

    # ------------------------------------------------------------------ one request

    def parse_request(self, fields: Mapping[str, str]) -> RestoreRequest:
        """Form fields -> validated settings; :class:`ServeError` (422) naming the field otherwise."""
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise ServeError(422, f"unknown field '{unknown[0]}'; the fields are {', '.join(FIELDS)}",
                             field=unknown[0])
        model = self._model_from(fields)
        bg = self.bg_name
        if "bg_upsampler" in fields:
            choice = fields["bg_upsampler"].strip()
            if choice.lower() in ("none", ""):
                bg = None
            elif self.bg_name and choice.lower() in (self.bg_name.lower(), "realesrgan"):
                bg = self.bg_name
            else:
                offered = ", ".join(["none"] + ([self.bg_name] if self.bg_name else []))
                raise ServeError(422, f"bg_upsampler: '{choice}' is not offered by this server ({offered})",
                                 field="bg_upsampler")
        fmt = fields.get("format", "png").strip().lower() or "png"
        if fmt not in FORMATS:
            raise ServeError(422, f"format: '{fmt}' is not one of png, jpeg, webp", field="format")
        quality = 95
        if "quality" in fields:
            quality_value = _float("quality", fields["quality"])
            if not (1 <= quality_value <= 100 and quality_value == int(quality_value)):
                raise ServeError(422, "quality: must be a whole number between 1 and 100", field="quality")
            quality = int(quality_value)
        cfg = self.config
        options = cfg.restore.replace(
            model=model,
            upscale=_float("upscale", fields["upscale"]) if "upscale" in fields else 2.0,
            weight=_float("weight", fields["weight"]) if "weight" in fields else 0.5,
            only_center_face=_bool("only_center_face", fields.get("only_center_face", "false")),
            aligned=_bool("aligned", fields.get("aligned", "false")),
            max_pixels=cfg.max_pixels, max_output_pixels=cfg.max_output_pixels)
        if options.upscale > cfg.max_upscale:  # before validate(), whose bound is the library's
            raise ServeError(422, f"upscale: must be between 1 and {cfg.max_upscale:g} on this server, "
                                  f"got {options.upscale:g}", field="upscale")
        try:
            options.validate()
        except OptionsError as exc:
            name = _FIELD_OF_FLAG.get(exc.option, exc.option)
            message = str(exc).split(": ", 1)[-1]
            raise ServeError(422, f"{name}: {message}", field=name) from None
        ext, media_type = FORMATS[fmt]
        return RestoreRequest(model, bg, options, ext, media_type, quality)

    def _model_from(self, fields: Mapping[str, str]) -> str:
        names = ", ".join(m.name for m in self.models)
        if "model" in fields and "version" in fields:
            raise ServeError(422, "give version or model, not both", field="model")
        if "model" in fields:
            wanted, field_name = fields["model"].strip(), "model"
        elif "version" in fields:
            field_name = "version"
            try:
                wanted = model_for_version(fields["version"])
            except OptionsError:
                raise ServeError(422, f"version: unknown version '{fields['version']}'; this server offers "
                                      f"{names}", field="version") from None
        else:
            return self.default_model
        for slot in self.models:
            if wanted.lower() in (slot.name.lower(), (slot.version or "").lower()):
                return slot.name
        raise ServeError(422, f"{field_name}: '{wanted}' is not offered by this server; choose one of {names}",
                         field=field_name)

    def restore(self, path: Path, filename: str, request: RestoreRequest) -> RestoreResult:
        """Read, restore and encode one uploaded file (blocking: run it in a worker thread), as
        :func:`~facerestore.pipeline.batch.run_batch` does a file: the same reading, the same
        ``Restorer.restore`` with the same options, the same composition of the output."""
        from ..io.images import (
            ImageReadError,
            encode_image,
            from_pipeline,
            holds_alpha,
            peek_size,
            read_image,
            scaled_size,
            to_pipeline,
        )

        opts = request.options
        timings: dict[str, float] = {}
        notes: list[str] = []
        tick = time.perf_counter()
        try:
            base = self.restorer(request.model, request.bg_upsampler)
        except Exception as exc:  # the server's set-up, not the request: name the model, log the cause
            log.error("loading the model %r failed", request.model, exc_info=exc)
            raise ServeError(503, f"the model '{request.model}' cannot be loaded on this server; its log says why",
                             headers={"Retry-After": "60"}) from exc
        timings["load"] = (time.perf_counter() - tick) * 1000

        # Sizes from the header first: too many pixels in (413) or out (422) cost no decoding.
        tick = time.perf_counter()
        try:
            width, height = peek_size(path)
        except ImageReadError as exc:
            raise ServeError(422, f"{filename}: {exc.reason}", field="image") from None
        if width * height > opts.max_pixels:
            raise ServeError(413, f"{filename}: the image is {width}x{height} ({width * height / 1e6:.1f} MP), "
                                  f"over this server's limit of {opts.max_pixels / 1e6:g} MP", field="image")
        if min(width, height) < MIN_SIDE:
            raise ServeError(422, f"{filename}: the image is {width}x{height}; send at least "
                                  f"{MIN_SIDE}x{MIN_SIDE} pixels", field="image")
        out_w, out_h = scaled_size(width, height, opts.upscale)
        if not opts.aligned and out_w * out_h > opts.max_output_pixels:
            raise ServeError(422, f"upscale: the result would be {out_w}x{out_h} ({out_w * out_h / 1e6:.0f} MP), "
                                  f"over this server's limit of {opts.max_output_pixels / 1e6:g} MP; "
                                  "choose a smaller upscale", field="upscale")
        try:
            loaded = read_image(path, max_pixels=int(opts.max_pixels))
        except ImageReadError as exc:
            raise ServeError(422, f"{filename}: {exc.reason}", field="image") from None
        timings["decode"] = (time.perf_counter() - tick) * 1000
        notes.extend(loaded.notes)
        width, height = loaded.width, loaded.height
        if loaded.alpha is not None and not holds_alpha(request.ext):
            notes.append("JPEG cannot store transparency; the alpha channel is dropped")
            loaded = dataclasses.replace(loaded, alpha=None)
        array = to_pipeline(loaded)

        # This request's settings on the shared networks; everything else is the server's options.
        restorer = base.with_options(upscale=opts.upscale, weight=opts.weight, aligned=opts.aligned,
                                     only_center_face=opts.only_center_face)
        restored = restorer.restore(array)
        timings.update(restored.timings)
        notes.extend(restored.notes)

        tick = time.perf_counter()
        if restored.image is None:  # aligned input: the result is the restored face
            final = restored.restored[0]
        else:  # as the batch composes restored_imgs: the input's kind (grey, alpha, bit depth)
            final = from_pipeline(restored.image, loaded, keep_grey=restorer.keep_grey)
        data = encode_image(final, request.ext, request.quality, name=filename)
        timings["encode"] = (time.perf_counter() - tick) * 1000
        if opts.aligned:
            boxes = [{"box": [0.0, 0.0, float(width), float(height)], "score": None, "landmarks": None}]
        else:
            boxes = [{"box": r.box, "score": r.score, "landmarks": r.landmarks} for r in restored.faces]
        return RestoreResult(image=data, ext=request.ext, media_type=request.media_type, faces=len(restored.cropped),
                             boxes=boxes, face_records=restored.faces, cropped_faces=restored.cropped,
                             restored_faces=restored.restored, input_size=(width, height),
                             output_size=(final.shape[1], final.shape[0]), timings=timings, notes=notes)
