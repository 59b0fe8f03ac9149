"""The REST API of `facerestore serve` through FastAPI's TestClient, on a release-layout checkpoint."""
from __future__ import annotations

import base64
import struct
import threading
import zlib
from pathlib import Path

import pytest

from serve_support import fastapi_test_client

TestClient = fastapi_test_client()

from facerestore.models import zoo  # noqa: E402
from facerestore.serve import create_app  # noqa: E402
from facerestore.serve.service import FIELDS  # noqa: E402
from serve_support import decode, png_bytes, serve_config, small_face_photo, wait_ready, write_tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("weights"))


pytestmark = pytest.mark.usefixtures("offline_zoo")  # no downloads, an empty model cache


@pytest.fixture(scope="module")
def request_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("requests")


@pytest.fixture(scope="module")
def client(checkpoint, request_dir):
    app = create_app(serve_config(checkpoint, tmp_dir=request_dir, max_upload_bytes=256 * 1024,
                                  max_pixels=4_000_000, max_output_pixels=2_000_000))
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(lambda path: (lambda r: (r.status_code, r.text))(c.get(path)))
        yield c


@pytest.fixture(scope="module")
def face_jpg(request) -> bytes:
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return small_face_photo(SHARED_DATA.resolve() / "photos")


def _post(client, data: bytes | None = None, fields: dict | None = None, filename: str = "photo.png", query: str = ""):
    files = {"image": (filename, data, "application/octet-stream")} if data is not None else None
    return client.post(f"/v1/restore{query}", files=files, data=fields or {})


# ------------------------------------------------------------------ restoring


def test_restores_a_photo_into_png_with_faces_and_timings(client, face_jpg):
    r = _post(client, face_jpg, {"upscale": "2", "weight": "0.7"}, filename="blake.jpg")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    src, out = decode(face_jpg), decode(r.content)
    assert out.shape[:2] == (src.shape[0] * 2, src.shape[1] * 2)
    assert int(r.headers["x-faces"]) == 2
    assert len(r.headers["x-face-boxes"].split(";")) == 2
    timing = r.headers["server-timing"]
    for step in ("upload", "queue", "decode", "detect", "restore", "encode", "total"):
        assert f"{step};dur=" in timing
    assert 'filename="blake_restored.png"' in r.headers["content-disposition"]


def test_json_gives_boxes_crops_and_restored_faces(client, face_jpg):
    r = _post(client, face_jpg, {"upscale": "1.5", "format": "webp"}, query="?output=json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["faces"] == len(body["boxes"]) == len(body["cropped_faces"]) == len(body["restored_faces"]) == 2
    for box in body["boxes"]:
        x1, y1, x2, y2 = box["box"]
        assert 0 <= x1 < x2 <= body["input"]["width"] and 0 <= y1 < y2 <= body["input"]["height"]
        assert len(box["landmarks"]) == 5 and 0 < box["score"] <= 1
    for b64 in body["cropped_faces"] + body["restored_faces"]:
        assert decode(base64.b64decode(b64)).shape == (64, 64, 3)  # the tiny model's own face size
    image = base64.b64decode(body["image"])
    assert image[:4] == b"RIFF" and image[8:12] == b"WEBP"
    assert body["output"]["media_type"] == "image/webp"
    assert decode(image).shape[1] == body["output"]["width"] == round(body["input"]["width"] * 1.5)
    assert set(body["timings_ms"]) >= {"upload", "queue", "decode", "detect", "restore", "encode", "total"}


def test_formats_and_a_transparent_input_as_jpeg(client):
    rgba = png_bytes(40, 32, channels=4)
    r = _post(client, rgba, {"format": "png", "upscale": "1"})
    assert r.status_code == 200 and decode(r.content).shape == (32, 40, 4)  # alpha kept
    r = _post(client, rgba, {"format": "jpeg", "upscale": "1"}, query="?output=json")
    assert r.status_code == 200
    body = r.json()
    assert base64.b64decode(body["image"])[:3] == b"\xff\xd8\xff"
    assert any("transparency" in note for note in body["notes"])
    assert body["faces"] == 0 and body["cropped_faces"] == []


def test_upscale_is_per_request_and_models_are_shared(client):
    service = client.app.state.service
    sizes = []
    for upscale in ("1", "3", "1.5"):
        r = _post(client, png_bytes(40, 30), {"upscale": upscale})
        assert r.status_code == 200, r.text
        sizes.append(decode(r.content).shape[:2])
    assert sizes == [(30, 40), (90, 120), (45, 60)]
    assert len(service._cache) == 1  # one Restorer, loaded once
    assert next(iter(service._cache.values())).upscale == 1.0  # requests never change the shared one


def test_a_model_loads_once_when_many_threads_ask_at_once(checkpoint, monkeypatch):
    from facerestore.pipeline.restorer import Restorer
    from facerestore.serve.service import RestoreService

    calls = []
    original = Restorer.__init__

    def counting(self, *args, **kwargs):
        calls.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Restorer, "__init__", counting)
    service = RestoreService(serve_config(checkpoint))
    got = []
    threads = [threading.Thread(target=lambda: got.append(service.restorer(service.default_model, None)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and all(r is got[0] for r in got)


def test_aligned_input_gives_the_restored_face(client):
    r = _post(client, png_bytes(80, 80), {"aligned": "true"}, query="?output=json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["faces"] == 1
    assert decode(base64.b64decode(body["image"])).shape == (64, 64, 3)


# ------------------------------------------------------------------ metadata and health


def test_models_health_ready_docs(client, checkpoint):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "model": checkpoint.stem}
    info = client.get("/v1/models").json()
    assert info["default"] == checkpoint.stem
    assert info["models"][0] | {"loaded": True, "face_size": 64, "architecture": "GFPGANv1Clean"} == info["models"][0]
    assert info["models"][0]["license"] == "Apache-2.0" and info["models"][0]["weight"].startswith("blend")
    assert info["bg_upsamplers"] == ["none"] and info["limits"]["max_upload_bytes"] == 256 * 1024
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/restore"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(body["properties"]) == set(FIELDS)


def test_readyz_waits_for_the_model(checkpoint):
    app = create_app(serve_config(checkpoint, preload=False))
    with TestClient(app) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False and "Retry-After" in r.headers
        assert _post(c, png_bytes(), {"upscale": "1"}).status_code == 200  # loads on first use
        assert c.get("/readyz").status_code == 200


def test_a_model_that_cannot_load_is_503_not_a_crash(tmp_path):
    app = create_app(serve_config(tmp_path / "missing.pth", preload=False))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = _post(c, png_bytes(), {})
        assert r.status_code == 503 and "cannot be loaded" in r.json()["detail"]


def test_version_names_the_official_models(checkpoint):
    from facerestore.serve.service import RestoreService, ServeError

    service = RestoreService(serve_config(checkpoint).replace(models=["v1.4", "v1.3", str(checkpoint)], preload=False))
    assert service.parse_request({"version": "1.3"}).model == "v1.3"
    assert service.parse_request({"version": "v1.4"}).model == "v1.4"
    assert service.parse_request({"model": checkpoint.stem}).model == checkpoint.stem
    assert service.parse_request({}).model == "v1.4"
    with pytest.raises(ServeError, match="not offered") as err:
        service.parse_request({"version": "1.2"})
    assert err.value.status == 422 and err.value.field == "version"
    with pytest.raises(ServeError, match="not offered"):
        service.parse_request({"model": "/etc/passwd"})  # a request never names a file


def test_each_model_says_what_weight_means_and_its_licence_before_it_is_loaded(checkpoint):
    from facerestore.models.descriptor import Purpose
    from facerestore.models.loading import check_model
    from facerestore.serve.service import RestoreService

    service = RestoreService(serve_config(checkpoint).replace(
        models=[str(checkpoint), "codeformer", "gpen-bfr-256", "restoreformer++"], preload=False))
    service.identify_models()  # the file's architecture, read from its tensors; zoo models know theirs
    described = {m["name"]: m for m in service.describe_models()["models"]}
    assert not any(m["loaded"] for m in described.values())
    assert described[checkpoint.stem]["weight"] == "blend: 0 = input face, 1 = fully restored"
    assert described[checkpoint.stem]["license"] == "Apache-2.0"
    assert described["codeformer"]["weight"] == "fidelity: 0 = quality, 1 = fidelity"
    assert described["codeformer"]["license"] == zoo.CODEFORMER_LICENSE
    assert described["gpen-bfr-256"]["weight"].startswith("blend") and described["gpen-bfr-256"]["license"] == \
        zoo.GPEN_LICENSE
    assert described["restoreformer++"]["weight"].startswith("blend")
    # The start-up check takes every family as a face model (it refused CodeFormer and GPEN before).
    for name, architecture in [("codeformer", "CodeFormer"), ("gpen-bfr-512", "FullGenerator"),
                               ("restoreformer++", "RestoreFormerPlusPlus")]:
        assert check_model(name, Purpose.FACE_RESTORATION, "--model") == architecture


# ------------------------------------------------------------------ bad input: 4xx, never 5xx


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` with almost no data: decoding it would cost gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 1000))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


BAD_FIELDS = [
    ({"upscale": "abc"}, "upscale"), ({"upscale": "0.5"}, "upscale"), ({"upscale": "5"}, "upscale"),
    ({"upscale": "inf"}, "upscale"), ({"weight": "1.5"}, "weight"), ({"weight": "nan"}, "weight"),
    ({"only_center_face": "maybe"}, "only_center_face"), ({"aligned": "2"}, "aligned"),
    ({"format": "gif"}, "format"), ({"quality": "0"}, "quality"), ({"quality": "50.5"}, "quality"),
    ({"version": "9"}, "version"), ({"model": "v1.4"}, "model"), ({"version": "1.4", "model": "x"}, "model"),
    ({"bg_upsampler": "realesrgan-x4plus"}, "bg_upsampler"), ({"colour": "yes"}, "colour"),
    ({"weight": "x" * 2000}, "weight"),
]


@pytest.mark.parametrize("fields, field", BAD_FIELDS, ids=[f"{k}" for k, _ in BAD_FIELDS])
def test_bad_option_values_are_422_naming_the_field(client, fields, field):
    r = _post(client, png_bytes(), fields)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field and r.json()["detail"]


def test_bad_output_query_is_422(client):
    r = _post(client, png_bytes(), {}, query="?output=xml")
    assert r.status_code == 422 and r.json()["field"] == "output"


@pytest.mark.parametrize("data, status, words", [
    (b"this is not an image", 422, "not an image"),
    (png_bytes(64, 64)[:150], 422, "truncated"),
    (b"", 422, "empty"),
    (_png_header_only(20000, 20000), 413, "20000x20000"),
    (png_bytes(4, 4), 422, "at least"),
    (png_bytes(1200, 1200, seed=1), 413, "larger than"),  # ~4.3 MB of noise > 256 KiB
])
def test_bad_images_are_4xx_with_a_message(client, data, status, words):
    r = _post(client, data, {"upscale": "1"}, filename="upload.png")
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]


def test_a_result_over_the_output_limit_is_refused_before_work(client):
    r = _post(client, png_bytes(1000, 900, noise=False), {"upscale": "2"})  # 1.8 MP in, 7.2 MP out > 2 MP
    assert r.status_code == 422 and r.json()["field"] == "upscale" and "2000x1800" in r.json()["detail"]


def test_request_shapes_that_are_refused(client):
    png = png_bytes()
    two = [("image", ("a.png", png, "image/png")), ("image", ("b.png", png, "image/png"))]
    r = client.post("/v1/restore", files=two)
    assert r.status_code == 400 and "one image" in r.json()["detail"]
    r = client.post("/v1/restore", files={"photo": ("a.png", png, "image/png")})
    assert r.status_code == 422 and "named 'image'" in r.json()["detail"]
    r = client.post("/v1/restore", files={"upscale": (None, "2")})  # multipart without the image
    assert r.status_code == 422 and r.json()["field"] == "image"
    r = client.post("/v1/restore", files={"image": (None, "not a file")})
    assert r.status_code == 422 and "must be a file" in r.json()["detail"]
    r = client.post("/v1/restore", data={"upscale": "2"})  # urlencoded
    assert r.status_code == 415
    r = client.post("/v1/restore", content=b"--xx\r\ngarbage",
                    headers={"content-type": "multipart/form-data; boundary=xx"})
    assert r.status_code in (400, 422)
    r = client.post("/v1/restore", content=b"x", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.json()["detail"]
    many = {f"f{i}": (None, "1") for i in range(40)} | {"image": ("a.png", png, "image/png")}
    assert client.post("/v1/restore", files=many).status_code == 400


def test_a_boundary_longer_than_the_parser_takes_is_400_not_500(client):
    """Issue 14, finding 2: a boundary over 256 characters made the parser raise outside its
    error handling: 500 and a traceback. Bad input is never a 5xx."""
    boundary = "b" * 300
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n\r\n'
            f"x\r\n--{boundary}--\r\n").encode()
    r = client.post("/v1/restore", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 400 and "boundary" in r.json()["detail"], r.text


def test_content_length_over_the_limit_is_413_before_reading(client):
    r = client.post("/v1/restore", content=b"x" * 10, headers={
        "content-type": "multipart/form-data; boundary=xx", "content-length": str(50 * 1024 * 1024)})
    assert r.status_code == 413


def test_no_request_file_outlives_its_request(client, request_dir, face_jpg):
    _post(client, face_jpg, {})
    _post(client, b"junk", {})
    _post(client, png_bytes(1200, 1200, seed=2), {})
    assert list(request_dir.iterdir()) == []


# ------------------------------------------------------------------ the page and the CLI


def test_page_and_its_files_are_served_without_any_cdn(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    for name in ("app.js", "style.css", "icon.svg"):
        assert f"/static/{name}" in r.text
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200
        assert "http://" not in asset.text.replace("http://www.w3.org/2000/svg", "") and "https://" not in asset.text
    assert "https://" not in r.text and "<script>" not in r.text  # no CDN, no inline script
    assert client.get("/static/../app.py").status_code == 404


def test_cli_serve_flags_and_safe_defaults():
    from facerestore.cli import build_parser
    from facerestore.cli.serve import config_from_args

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.func.__module__ == "facerestore.cli.serve"
    args = build_parser().parse_args(["serve", "--model", "a.pth", "--model", "v1.3", "--max-upload-mb", "5",
                                      "--max-concurrency", "2", "--queue", "3", "--device", "cpu"])
    config = config_from_args(args).validate()
    assert config.models == ["a.pth", "v1.3"] and config.max_upload_bytes == 5 * 1024 * 1024
    assert (config.max_concurrency, config.queue_size) == (2, 3)


def test_cli_serve_names_bad_limits_in_the_units_of_their_flags(capsys):
    """Issue 14, finding 10: `--max-upload-mb -1` was reported as -1048576 (bytes)."""
    from facerestore import cli

    assert cli.main(["serve", "--max-upload-mb", "-1", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "--max-upload-mb" in err and "-1 MB" in err and "1048576" not in err
    assert cli.main(["serve", "--upload-min-rate-kb", "-2", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "--upload-min-rate-kb" in err and "-2 KB" in err and "2048" not in err
    for flag in ("--upload-timeout", "--max-uploads"):
        assert cli.main(["serve", flag, "0", "--port", "1"]) == 2
        assert flag in capsys.readouterr().err


def test_background_upsampler_on_and_off_share_every_network(checkpoint, tmp_path):
    import torch

    from facerestore.archs.rrdbnet import RRDBNet

    torch.manual_seed(0)
    bg = tmp_path / "tiny_x2.pth"
    torch.save({"params_ema": RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4).state_dict()}, bg)
    app = create_app(serve_config(checkpoint, bg_upsampler=str(bg), bg_tile=0))
    with TestClient(app) as c:
        wait_ready(lambda path: (lambda r: (r.status_code, r.text))(c.get(path)))
        assert c.get("/v1/models").json()["bg_upsamplers"] == ["none", "tiny_x2"]
        with_bg = _post(c, png_bytes(40, 30), {"upscale": "2"})
        without = _post(c, png_bytes(40, 30), {"upscale": "2", "bg_upsampler": "none"})
        assert with_bg.status_code == without.status_code == 200
        assert decode(with_bg.content).shape == decode(without.content).shape == (60, 80, 3)
        assert with_bg.content != without.content  # the network, not a resize
    service = app.state.service
    (on, off) = (service._cache[(checkpoint.stem, "tiny_x2")], service._cache[(checkpoint.stem, None)])
    assert on.net is off.net and on.detector is off.detector and on.upsampler is not None and off.upsampler is None
