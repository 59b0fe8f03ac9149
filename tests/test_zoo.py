"""The downloader and model cache, against a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import multiprocessing
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from facerestore.models import zoo

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, not all zeros so a wrong byte changes the hash
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path.startswith("/good"):
            self._send(PAYLOAD)
        elif self.path == "/truncated":
            # Announce the full length, send half, hang up: a dropped connection.
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(zoo.OFFLINE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache"


def _entry(url: str, **changes) -> zoo.ModelEntry:
    base = zoo.ModelEntry("test-model", "test_weights.pth", url, "RRDBNet", sha256=PAYLOAD_SHA, size=len(PAYLOAD))
    return replace(base, **changes)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial" in p.name) if folder.exists() else []


def test_good_download_lands_atomically_in_cache(server, cache):
    path = zoo.ensure_model_file(_entry(f"{server}/good"), progress=False)
    assert path == cache / "test_weights.pth"
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(cache) == []
    # Second use: found in the cache, no new request.
    before = _Handler.hits.get("/good", 0)
    assert zoo.ensure_model_file(_entry(f"{server}/good"), progress=False) == path
    assert _Handler.hits.get("/good", 0) == before


def test_wrong_hash_is_rejected_and_leaves_nothing(server, cache):
    entry = _entry(f"{server}/good", sha256="0" * 64)
    with pytest.raises(zoo.ModelUnavailableError, match="sha256"):
        zoo.ensure_model_file(entry, progress=False)
    assert not (cache / "test_weights.pth").exists()
    assert _leftovers(cache) == []


def test_truncated_transfer_is_rejected_and_leaves_nothing(server, cache):
    with pytest.raises(zoo.ModelUnavailableError) as info:
        zoo.ensure_model_file(_entry(f"{server}/truncated"), progress=False)
    assert "test_weights.pth" in str(info.value)
    assert not (cache / "test_weights.pth").exists()
    assert _leftovers(cache) == []


def test_404_names_file_url_and_where_to_put_it(server, cache):
    entry = _entry(f"{server}/missing")
    with pytest.raises(zoo.ModelUnavailableError) as info:
        zoo.ensure_model_file(entry, progress=False)
    message = str(info.value)
    assert "test_weights.pth" in message and entry.url in message
    assert str(cache / "test_weights.pth") in message
    assert PAYLOAD_SHA in message


def test_offline_mode_never_touches_the_network(server, cache, monkeypatch):
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    before = dict(_Handler.hits)
    with pytest.raises(zoo.ModelUnavailableError, match="put it at"):
        zoo.ensure_model_file(_entry(f"{server}/good-offline"), progress=False)
    assert _Handler.hits == before


def test_official_folders_are_used_when_the_hash_matches(server, cache, tmp_path):
    legacy = tmp_path / "experiments" / "pretrained_models"
    legacy.mkdir(parents=True)
    (legacy / "test_weights.pth").write_bytes(PAYLOAD)
    entry = _entry(f"{server}/missing")  # would 404 if it tried to download
    assert zoo.ensure_model_file(entry, progress=False) == legacy / "test_weights.pth"


def test_official_folder_copy_with_wrong_hash_is_ignored(server, cache, tmp_path):
    legacy = tmp_path / "gfpgan" / "weights"
    legacy.mkdir(parents=True)
    (legacy / "test_weights.pth").write_bytes(PAYLOAD[:-1] + b"x")
    path = zoo.ensure_model_file(_entry(f"{server}/good-legacy"), progress=False)
    assert path == cache / "test_weights.pth" and path.read_bytes() == PAYLOAD


def test_unpublished_hash_is_recorded_and_enforced(server, cache):
    entry = _entry(f"{server}/good-nohash", sha256=None, size=None)
    path = zoo.ensure_model_file(entry, progress=False)
    record = cache / "test_weights.pth.sha256"
    assert record.read_text().strip() == PAYLOAD_SHA
    zoo.verify_file(path, entry)
    path.write_bytes(PAYLOAD[::-1])  # same size, different bytes: corruption after the fact
    with pytest.raises(zoo.ChecksumError):
        zoo.verify_file(path, entry)


def _download_in_process(url: str, dest: str) -> None:
    zoo.download(url, Path(dest), sha256=PAYLOAD_SHA, size=len(PAYLOAD), progress=False)


def test_two_processes_downloading_at_once(server, cache):
    dest = cache / "concurrent.pth"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_download_in_process, args=(f"{server}/good-concurrent", str(dest)))
             for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(cache) == []
    # The lock makes later processes find the finished file instead of fetching it again.
    assert _Handler.hits["/good-concurrent"] == 1


def test_zoo_table_is_consistent():
    names = [e.name.lower() for e in zoo.MODELS]
    assert len(names) == len(set(names))
    for entry in zoo.MODELS:
        assert entry.url.startswith(("https://github.com/", "https://download.pytorch.org/models/",
                                     "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/"))  # GPEN's README
        assert entry.license, f"{entry.name}: no licence"
        assert entry.url.endswith("/" + entry.filename)
        assert entry.sha256 is None or len(entry.sha256) == 64
        assert zoo.find_entry(entry.name) is entry
        assert zoo.find_entry(entry.filename) is entry
    assert zoo.find_entry("1.4").name == "v1.4"
    assert zoo.find_entry("no-such-model") is None


# ----------------------------------------------------------------------------- licence consent
@pytest.fixture
def no_consent(monkeypatch):
    monkeypatch.delenv(zoo.ACCEPT_LICENSE_ENV, raising=False)
    monkeypatch.setattr(zoo, "_accepted_licenses", set())
    monkeypatch.setattr(zoo, "_noted_licenses", set())


def _restricted(url: str) -> zoo.ModelEntry:
    return _entry(url, name="nc-model", filename="nc.pth", aliases=("nc",), license=zoo.CODEFORMER_LICENSE)


def test_restricted_licence_is_not_downloaded_without_consent(server, cache, no_consent):
    before = _Handler.hits.get("/good-nc", 0)
    with pytest.raises(zoo.LicenseConsentError, match="--accept-license nc-model") as info:
        zoo.ensure_model_file(_restricted(f"{server}/good-nc"), progress=False)
    assert zoo.ACCEPT_LICENSE_ENV in str(info.value) and "non-commercial" in str(info.value)
    assert _Handler.hits.get("/good-nc", 0) == before  # not even a request
    assert not (cache / "nc.pth").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_consent_by_flag_or_environment_allows_the_download(server, cache, no_consent, monkeypatch, how):
    if how == "flag":
        zoo.accept_license("NC")  # an alias, any case, as --accept-license passes it
    else:
        monkeypatch.setenv(zoo.ACCEPT_LICENSE_ENV, "other, nc-model")
    path = zoo.ensure_model_file(_restricted(f"{server}/good-nc-{how}"), progress=False)
    assert path.read_bytes() == PAYLOAD


def test_consent_for_another_model_does_not_count(server, cache, no_consent, monkeypatch):
    monkeypatch.setenv(zoo.ACCEPT_LICENSE_ENV, "codeformer")
    with pytest.raises(zoo.LicenseConsentError):
        zoo.ensure_model_file(_restricted(f"{server}/good-nc"), progress=False)


def test_permissive_licence_needs_no_consent(server, cache, no_consent):
    entry = _entry(f"{server}/good-apache", license="Apache-2.0")
    assert zoo.ensure_model_file(entry, progress=False).read_bytes() == PAYLOAD


def test_restricted_models_in_the_zoo_need_consent() -> None:
    for name in ("codeformer", "gpen-bfr-512", "gpen-bfr-256"):
        assert zoo.needs_consent(zoo.find_entry(name)), name
    for name in ("v1.4", "restoreformer++", "RestoreFormer"):
        assert not zoo.needs_consent(zoo.find_entry(name)), name


def test_licence_note_is_printed_once(no_consent, capsys) -> None:
    zoo.note_license("codeformer", zoo.CODEFORMER_LICENSE)
    zoo.note_license("codeformer", zoo.CODEFORMER_LICENSE)
    zoo.note_license("v1.4", "Apache-2.0")
    err = capsys.readouterr().err
    assert err.count("S-Lab License 1.0") == 1 and "v1.4" not in err


def test_restore_cli_refuses_a_restricted_model_without_consent(cache, no_consent, tmp_path, capsys) -> None:
    import numpy as np
    from PIL import Image

    from facerestore.cli import main

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "in.png")
    code = main(["restore", "-i", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", "codeformer",
                 "--bg_upsampler", "none"])
    err = capsys.readouterr().err
    assert code == 2 and "--accept-license codeformer" in err and "non-commercial" in err
    assert not (cache / "codeformer.pth").exists()
