"""Settings of a server: which models it offers, where they run, and the limits that keep it up."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..pipeline.options import OptionsError, check_backend, default_backend

MB = 1024 * 1024


@dataclass
class ServeConfig:
    """Everything ``facerestore serve`` can be told.

    Models: ``models`` are the face models a request may choose (zoo names or weights files); the
    first is the default. A request names one by its zoo name (``v1.4``), its ``version``
    (``1.4``) or a file's stem; nothing else can be loaded, so a request never makes the server
    read an arbitrary path or download anything. ``bg_upsampler`` likewise: ``None`` (a resize)
    or one upsampler a request may turn on or off.

    Limits (see ``shared/specs/reliability.md``): ``max_upload_bytes`` is enforced while the
    body streams in (413); ``max_pixels`` on the image header before decoding (413);
    ``max_output_pixels`` and ``max_upscale`` before any work (422). At most ``max_concurrency``
    restorations run at once, and at most ``queue_size`` more requests wait (uploading or
    queued); past that a request gets 503 with ``Retry-After``, as it does after waiting
    ``queue_timeout`` seconds for a slot or running over ``job_timeout`` seconds.
    """

    models: list[Any] = field(default_factory=lambda: ["v1.4"])
    bg_upsampler: Any = None
    bg_tile: int = 400
    detector: Any = "auto"
    parser: Any = "parsenet"
    device: str = "cpu"
    allow_download: bool = True
    backend: str = field(default_factory=lambda: default_backend())  # auto, torch, onnxruntime, openvino
    # limits
    max_upload_bytes: int = 20 * MB
    max_pixels: int = 40_000_000
    max_output_pixels: int = 100_000_000
    max_upscale: float = 4.0
    max_concurrency: int = 1
    queue_size: int = 8
    queue_timeout: float = 60.0
    job_timeout: float = 300.0
    max_form_fields: int = 16
    max_field_bytes: int = 1024
    # per-request folders are made here (None: the system's temporary folder)
    tmp_dir: Path | None = None
    # load the default model when the app starts (in the background; /readyz says when done)
    preload: bool = True

    def replace(self, **changes: Any) -> "ServeConfig":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "ServeConfig":
        """Raise :class:`OptionsError` naming the flag of the first unusable setting."""
        if not self.models:
            raise OptionsError("--model", "give at least one model")
        checks = [("--max-upload-mb", self.max_upload_bytes, 1), ("--max-pixels", self.max_pixels, 1),
                  ("--max-output-pixels", self.max_output_pixels, 1), ("--max-concurrency", self.max_concurrency, 1),
                  ("--queue", self.queue_size, 0), ("--max-upscale", self.max_upscale, 1),
                  ("--queue-timeout", self.queue_timeout, 0), ("--job-timeout", self.job_timeout, 0)]
        for flag, value, low in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
                raise OptionsError(flag, f"must be a number of at least {low}, got {value!r}")
        check_backend("--backend", self.backend)
        if self.tmp_dir is not None and not Path(self.tmp_dir).is_dir():
            raise OptionsError("--tmp-dir", f"{self.tmp_dir} is not a folder")
        return self
