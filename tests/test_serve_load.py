"""Limits of `facerestore serve` under load, on a real uvicorn server on 127.0.0.1.

The limiter alone (asyncio, no server) and then the whole server: a burst of concurrent
requests where the concurrency bound holds, the queued requests finish, the ones over the
bound get 503 + Retry-After at once, memory stays bounded, and an upload over the size limit
is refused while it streams."""
from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")

from facerestore.models import zoo  # noqa: E402
from facerestore.serve import create_app  # noqa: E402
from facerestore.serve.limits import Busy, JobLimiter  # noqa: E402
from serve_support import png_bytes, rss_bytes, running_server, serve_config, wait_ready, write_tiny_checkpoint  # noqa: E402


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")


# ------------------------------------------------------------------ the limiter alone


def test_limiter_bounds_running_jobs_and_queue():
    async def scenario():
        limiter = JobLimiter(max_concurrency=2, queue_size=2, queue_timeout=5, job_timeout=5)
        release = threading.Event()
        running_now, peak = [0], [0]
        lock = threading.Lock()

        def job():
            with lock:
                running_now[0] += 1
                peak[0] = max(peak[0], running_now[0])
            release.wait(5)
            with lock:
                running_now[0] -= 1
            return "done"

        async def request():
            async with limiter.admit():
                return await limiter.run(job)

        tasks = [asyncio.create_task(request()) for _ in range(6)]
        await asyncio.sleep(0.2)
        assert limiter.stats.running == 2 and limiter.stats.admitted == 4
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        limiter.shutdown()
        return results, peak[0], limiter.stats

    results, peak, stats = asyncio.run(scenario())
    assert results.count("done") == 4 and peak == 2 and stats.peak_running == 2
    busy = [r for r in results if isinstance(r, Busy)]
    assert len(busy) == 2 and all(b.retry_after >= 1 for b in busy)
    assert stats.admitted == 0 and stats.running == 0


def test_limiter_times_out_but_keeps_the_slot_until_the_thread_ends():
    async def scenario():
        limiter = JobLimiter(max_concurrency=1, queue_size=5, queue_timeout=0.2, job_timeout=0.2)
        release = threading.Event()
        cleaned = []
        with pytest.raises(Busy, match="longer than"):
            await limiter.run(lambda: release.wait(5), finally_=lambda: cleaned.append("slow"))
        assert cleaned == [] and limiter.stats.running == 1  # still working: its files stay, its slot too
        with pytest.raises(Busy, match="free slot"):
            await limiter.run(lambda: "never", finally_=lambda: cleaned.append("queued"))
        assert cleaned == ["queued"]  # never ran: cleaned up at once
        release.set()
        for _ in range(100):
            if limiter.stats.running == 0:
                break
            await asyncio.sleep(0.01)
        assert cleaned == ["queued", "slow"]
        assert await limiter.run(lambda: "next") == "next"  # the slot came back
        limiter.shutdown()

    asyncio.run(scenario())


def test_limiter_bounds_uploads_apart_from_the_queue():
    async def scenario():
        limiter = JobLimiter(max_concurrency=1, queue_size=0, queue_timeout=1, job_timeout=1, max_uploads=2)
        async with limiter.receiving(), limiter.receiving():
            assert limiter.stats.uploading == 2 and limiter.stats.admitted == 0
            with pytest.raises(Busy, match="uploads"):
                async with limiter.receiving():
                    pass
            async with limiter.admit():  # a place in the queue is another matter
                with pytest.raises(Busy, match="busy"):
                    limiter.check_room()
        assert limiter.stats.uploading == 0 and limiter.stats.peak_uploading == 2
        limiter.shutdown()

    asyncio.run(scenario())


# ------------------------------------------------------------------ a real server


def _multipart(data: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n'
                 f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _post(base: str, data: bytes, fields: dict[str, str] | None = None, timeout: float = 60):
    body, content_type = _multipart(data, fields or {})
    req = urllib.request.Request(f"{base}/v1/restore", data=body, method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def _get(base: str, path: str):
    try:
        with urllib.request.urlopen(base + path, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights"))


def test_burst_concurrency_queue_503_and_bounded_memory(checkpoint, tmp_path):
    requests_dir = tmp_path / "requests"
    requests_dir.mkdir()
    app = create_app(serve_config(checkpoint, max_concurrency=1, queue_size=2, tmp_dir=requests_dir,
                                  max_upload_bytes=1024 * 1024))
    service = app.state.service
    restore = service.restore
    active, peak = [0], [0]
    lock = threading.Lock()

    def slow_restore(*args, **kwargs):  # the real work, held long enough for the burst to pile up
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.3)
            return restore(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    service.restore = slow_restore
    image = png_bytes(64, 48)
    with running_server(app) as base:
        wait_ready(lambda path: _get(base, path))
        assert _post(base, image)[0] == 200  # warm up before measuring memory
        rss_before = rss_bytes()
        outcomes = []
        for burst in range(3):
            barrier = threading.Barrier(8)
            results: list = []

            def client():
                barrier.wait()
                results.append(_post(base, image, {"upscale": "2"}))

            threads = [threading.Thread(target=client) for _ in range(8)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            outcomes.append((results, time.perf_counter() - start))
        rss_after = rss_bytes()
        for results, seconds in outcomes:
            codes = sorted(status for status, _, _ in results)
            assert len(codes) == 8 and set(codes) <= {200, 503}, codes
            assert codes.count(200) >= 3  # one running + two queued all finish
            assert codes.count(503) >= 1  # the rest are turned away, not piled up
            for status, headers, body in results:
                if status == 503:
                    assert int(headers["Retry-After"]) >= 1 and "busy" in json.loads(body)["detail"]
                else:
                    assert headers["Content-Type"] == "image/png" and body[:4] == b"\x89PNG"
            assert seconds < 20
        stats = app.state.limiter.stats
        print("burst status codes:", [sorted(s for s, _, _ in r) for r, _ in outcomes],
              f"seconds: {[round(t, 2) for _, t in outcomes]}, RSS growth: {(rss_after - rss_before) / 2**20:.1f} MiB")
        assert peak[0] == 1 and stats.peak_running == 1  # never two restorations at once
        assert stats.peak_admitted <= 3
        assert rss_after - rss_before < 150 * 1024 * 1024, (rss_before, rss_after)
        assert list(requests_dir.iterdir()) == []  # every request's folder is gone
        assert _post(base, image)[0] == 200  # and the server still serves


def test_an_oversized_upload_is_refused_while_it_streams(checkpoint, tmp_path):
    app = create_app(serve_config(checkpoint, max_upload_bytes=256 * 1024, tmp_dir=tmp_path))
    with running_server(app) as base:
        port = int(base.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        boundary = "b0undary"
        conn.putrequest("POST", "/v1/restore")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Transfer-Encoding", "chunked")  # no Content-Length to check up front
        conn.endheaders()

        def chunk(data: bytes) -> None:
            conn.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

        chunk(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'.encode())
        sent = 0
        block = b"\0" * 65536
        refused_early = False
        try:
            while sent < 64 * 1024 * 1024:  # would be 64 MB; the server stops reading at 256 KiB
                chunk(block)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            refused_early = True
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 413 and "larger than" in body["detail"]
        print(f"oversized upload: 413 after sending {sent / 2**20:.1f} MiB of 64 MiB (reset: {refused_early})")
        assert refused_early or sent < 64 * 1024 * 1024
        conn.close()
        assert list(tmp_path.iterdir()) == []


def _stall(port: int, first_body_bytes: bytes = b"--") -> socket.socket:
    """A POST whose headers promise a body of 100 kB, of which only ``first_body_bytes`` come."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/restore HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: 100000\r\n\r\n"
              + first_body_bytes)
    return s


def _response_status(s) -> int:
    data = b""
    while b"\r\n" not in data:
        more = s.recv(4096)
        if not more:
            break
        data += more
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else -1


def test_stalled_uploads_hold_no_place_and_time_out(checkpoint, tmp_path):
    """Issue 14, finding 1: nine connections that sent headers and two body bytes, then stopped,
    held every place (--max-concurrency 1 + --queue 8), so everyone else got 503 for as long as
    they stayed. A request now counts only once its body is complete, and a body that stops
    coming (or trickles in slower than the minimum rate) is answered 408 and closed."""
    app = create_app(serve_config(checkpoint, max_concurrency=1, queue_size=8, tmp_dir=tmp_path,
                                  upload_timeout=3.0, upload_min_rate=1000))
    limiter, service = app.state.limiter, app.state.service
    restore, uploading_meanwhile = service.restore, []

    def watched_restore(*args, **kwargs):
        uploading_meanwhile.append(limiter.stats.uploading)
        return restore(*args, **kwargs)

    service.restore = watched_restore
    with running_server(app) as base:
        wait_ready(lambda path: _get(base, path))
        port = int(base.rsplit(":", 1)[1])
        start = time.monotonic()
        stalled = [_stall(port) for _ in range(9)]
        time.sleep(0.3)  # all nine are inside the app, waiting for their bodies
        status, _, body = _post(base, png_bytes(40, 30), timeout=20)
        assert status == 200, body
        assert uploading_meanwhile == [9]  # restored while the nine were still there

        trickle = _stall(port, b"")  # one byte every 0.1 s: never idle 3 s, but 10 B/s < 1000 B/s
        trickle.settimeout(0.1)
        trickle_start = time.monotonic()
        status = -1
        valid = b'--b0undary\r\nContent-Disposition: form-data; name="upscale"\r\n\r\n' + b"2" * 1000
        for byte in valid:
            if time.monotonic() - trickle_start > 8:
                break
            try:
                trickle.sendall(bytes([byte]))
            except OSError:  # the server closed it
                break
            try:
                status = _response_status(trickle)
                break
            except TimeoutError:
                continue
        trickle.settimeout(10)
        if status == -1:
            status = _response_status(trickle)
        assert status == 408 and time.monotonic() - trickle_start < 6

        for s in stalled:
            assert _response_status(s) == 408
            s.close()
        assert time.monotonic() - start < 8  # 3 s without a byte ends an upload
        trickle.close()
        stats = limiter.stats
        assert stats.admitted == 0 and stats.peak_admitted == 1
        assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ the command


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_facerestore_serve_command_serves_the_page_and_the_api(checkpoint, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    port = _free_port()
    env = dict(os.environ, **{zoo.OFFLINE_ENV: "1", zoo.CACHE_ENV: str(tmp_path / "cache"),
                              "OMP_NUM_THREADS": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "facerestore", "serve", "--model", str(checkpoint),
                             "--detector", "mtcnn", "--parser", "none", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(base, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.2)
        status, page = _get(base, "/")
        assert status == 200 and "facerestore" in page
        status, headers, body = _post(base, png_bytes(40, 30), {"upscale": "2"})
        assert status == 200 and body[:4] == b"\x89PNG" and headers["X-Image-Size"] == "80x60"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert f"serving on http://127.0.0.1:{port}/" in err  # bound to 127.0.0.1 unless told otherwise


def test_facerestore_serve_fails_fast_on_a_missing_model(tmp_path, capsys):
    from facerestore import cli

    assert cli.main(["serve", "--model", str(tmp_path / "missing.pth"), "--detector", "mtcnn",
                     "--parser", "none", "--port", "1"]) != 0
    assert "missing.pth" in capsys.readouterr().err
