"""Helpers for the tests of `facerestore serve` (test_serve_*.py): a tiny model in the release
layout, small images, and a real uvicorn server on 127.0.0.1 in a thread."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest


def fastapi_test_client() -> type:
    """FastAPI's TestClient; called at a test module's top, it skips the module when the web
    extra (fastapi, python-multipart, httpx) is not installed."""
    for module in ("fastapi", "python_multipart", "httpx"):
        pytest.importorskip(module)
    with warnings.catch_warnings():  # Starlette >= 1.x prefers httpx2 and says so; httpx works
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient


def write_tiny_checkpoint(folder: Path) -> Path:
    """A real GFPGANv1Clean (U-Net, CS-SFT, StyleGAN2 decoder) at 64x64 and 1/8 width: ~4 MB, fast on
    CPU; the descriptor gives it 64x64 crops."""
    from stand_ins import write_tiny_checkpoint as write

    return write(folder / "tiny_clean.pth", out_size=64)


def serve_config(checkpoint: Path, **changes):
    """Offline settings: the built-in MTCNN, no ParseNet (its weights are not here), no downloads."""
    from facerestore.serve import ServeConfig

    return ServeConfig.build(models=[str(checkpoint)], detector="mtcnn", parser=None, allow_download=False,
                             **changes)


def png_bytes(width: int = 48, height: int = 40, channels: int = 3, seed: int = 0, noise: bool = True) -> bytes:
    """A PNG of random pixels (incompressible: its size is about width*height*channels), or of
    one grey level (tiny)."""
    rng = np.random.default_rng(seed)
    img = (rng.integers(0, 256, (height, width, channels), dtype=np.uint8) if noise
           else np.full((height, width, channels), 128, np.uint8))
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def small_face_photo(photos: Path, width: int = 350) -> bytes:
    """Blake_Lively.jpg (two faces) at ``width`` pixels: the detector finds both, quickly."""
    img = cv2.imread(str(photos / "Blake_Lively.jpg"))
    height = round(img.shape[0] * width / img.shape[1])
    ok, buf = cv2.imencode(".jpg", cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))
    assert ok
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "not a decodable image"
    return img


def rss_bytes() -> int:
    """This process's resident memory (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def running_server(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def wait_ready(get, timeout: float = 20.0) -> None:
    """Poll /readyz through ``get(path) -> (status, body)`` until the default model is loaded."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = get("/readyz")
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready: {body}")
        time.sleep(0.05)
