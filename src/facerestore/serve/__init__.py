"""``facerestore serve``: the web page and REST API over the shared restoration pipeline.

Needs the optional extra ``pip install "facerestore[serve]"`` (FastAPI, uvicorn,
python-multipart). Nothing here imports them until :func:`create_app` is called, so the core
package never needs them.

* :mod:`.config` - :class:`ServeConfig`, every setting of a server (limits included).
* :mod:`.limits` - admission, a bounded number of restorations at once, a bounded queue.
* :mod:`.upload` - a multipart reader that enforces the size limit while streaming and writes
  the one file of a request into that request's own temporary folder.
* :mod:`.service` - models loaded once and shared; one request's work, off the event loop.
* :mod:`.app` - the FastAPI application: routes, JSON errors, the page at ``/``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import ServeConfig

__all__ = ["ServeConfig", "create_app"]

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI


def create_app(config: ServeConfig | None = None, **kwargs: Any) -> FastAPI:
    """The FastAPI application for ``config`` (or ``ServeConfig(**kwargs)``)."""
    from .app import create_app as _create

    return _create(config, **kwargs)
