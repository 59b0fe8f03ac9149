"""Settings of a server: which models it offers, where they run, and the limits that keep it up."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..pipeline.options import FIELD_NAMES, OptionsError, RestoreOptions

MB = 1024 * 1024


@dataclass
class ServeConfig:
    """Everything ``facerestore serve`` can be told.

    Models: ``models`` are the face models a request may choose (zoo names or weights files); the
    first is the default. A request names one by its zoo name (``v1.4``), its ``version``
    (``1.4``) or a file's stem; nothing else can be loaded, so a request never makes the server
    read an arbitrary path or download anything. ``restore.bg_upsampler`` likewise: ``None`` (a
    resize) or one upsampler a request may turn on or off.

    Restoration: ``restore`` is the :class:`~facerestore.pipeline.options.RestoreOptions` every
    request starts from, the same settings ``facerestore restore`` fills (detector, parser,
    device, ``det_threshold``, ``min_face``, ``color_match``, identity model...); a request may
    change only ``upscale``, ``weight``, ``only_center_face``, ``aligned`` and the background
    upsampler (on/off). Its ``model`` is unused (``models`` says which). ``replace`` and
    :meth:`build` take its field names too: ``ServeConfig.build(models=[...], detector="mtcnn")``.

    Limits (see ``shared/specs/reliability.md``): ``max_upload_bytes`` is enforced while the
    body streams in (413); ``max_pixels`` on the image header before decoding (413);
    ``max_output_pixels`` and ``max_upscale`` before any work (422). At most ``max_concurrency``
    restorations run at once, and at most ``queue_size`` more requests wait (uploading or
    queued); past that a request gets 503 with ``Retry-After``, as it does after waiting
    ``queue_timeout`` seconds for a slot or running over ``job_timeout`` seconds.
    """

    models: list[Any] = field(default_factory=lambda: ["v1.4"])
    restore: RestoreOptions = field(default_factory=RestoreOptions)
    # limits
    max_upload_bytes: int = 20 * MB
    max_pixels: int = 40_000_000
    max_output_pixels: int = 100_000_000
    max_upscale: float = 4.0
    max_concurrency: int = 1
    queue_size: int = 8
    queue_timeout: float = 60.0
    job_timeout: float = 300.0
    # a body that stops for upload_timeout s, or comes slower than upload_min_rate bytes/s after
    # the first upload_timeout s, is answered 408; at most max_uploads bodies are read at once
    upload_timeout: float = 30.0
    upload_min_rate: float = 10 * 1024
    max_uploads: int = 32
    max_form_fields: int = 16
    max_field_bytes: int = 1024
    # per-request folders are made here (None: the system's temporary folder)
    tmp_dir: Path | None = None
    # load the default model when the app starts (in the background; /readyz says when done)
    preload: bool = True

    @classmethod
    def build(cls, **settings: Any) -> ServeConfig:
        """A config from server settings and :class:`RestoreOptions` field names, mixed."""
        return cls().replace(**settings)

    def replace(self, **changes: Any) -> ServeConfig:
        """A copy with ``changes``: server settings, or fields of ``restore`` by their names."""
        own = {f.name for f in dataclasses.fields(self)}
        restore_changes = {k: v for k, v in changes.items() if k not in own}
        unknown = sorted(set(restore_changes) - FIELD_NAMES)
        if unknown:
            raise TypeError(f"unknown server setting(s): {', '.join(unknown)}")
        server_changes = {k: v for k, v in changes.items() if k in own}
        if restore_changes:
            server_changes["restore"] = server_changes.get("restore", self.restore).replace(**restore_changes)
        return dataclasses.replace(self, **server_changes)

    @property
    def device(self) -> str:
        return str(self.restore.device)

    def validate(self) -> ServeConfig:
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
        _check_upload_limits(self)
        if self.tmp_dir is not None and not Path(self.tmp_dir).is_dir():
            raise OptionsError("--tmp-dir", f"{self.tmp_dir} is not a folder")
        self.restore.validate()
        return self


def _check_upload_limits(config: ServeConfig) -> None:
    """The upload's time limits, named by their flags and in their units."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not (number(config.upload_timeout) and config.upload_timeout > 0):
        raise OptionsError("--upload-timeout",
                           f"must be a number of seconds above 0, got {config.upload_timeout!r}")
    if not (number(config.upload_min_rate) and config.upload_min_rate >= 0):
        rate = (f"{config.upload_min_rate / 1024:g} KB/s" if number(config.upload_min_rate)
                else repr(config.upload_min_rate))
        raise OptionsError("--upload-min-rate-kb", f"must be at least 0 KB/s, got {rate}")
    whole = isinstance(config.max_uploads, int) and not isinstance(config.max_uploads, bool)
    if not (whole and config.max_uploads >= 1):
        raise OptionsError("--max-uploads", f"must be a whole number of at least 1, got {config.max_uploads!r}")
