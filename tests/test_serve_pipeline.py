"""The web service takes the CLI's road (issue 14): the same options give the same faces and
bytes through POST /v1/restore as through run_batch; every model is checked at start; no
response holds a server path; query options other than `output` are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from serve_support import fastapi_test_client

TestClient = fastapi_test_client()

from facerestore.archs.rrdbnet import RRDBNet  # noqa: E402
from facerestore.pipeline.batch import run_batch  # noqa: E402
from facerestore.pipeline.options import RestoreOptions  # noqa: E402
from facerestore.serve import create_app  # noqa: E402
from serve_support import png_bytes, serve_config, small_face_photo  # noqa: E402


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny_esrgan.pth"
    net = RRDBNet(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4)
    torch.save({"params_ema": net.state_dict()}, path)
    return path


pytestmark = pytest.mark.usefixtures("offline_zoo")  # no downloads, an empty model cache
TINY_FACE_SIZE = 64  # conftest's tiny_checkpoint at the serve tests' size: 64-px crops


@pytest.fixture(scope="module")
def face_jpg() -> bytes:
    from conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return small_face_photo(SHARED_DATA.resolve() / "photos")


def _client(config) -> TestClient:
    return TestClient(create_app(config.replace(preload=False)), raise_server_exceptions=False)


# ------------------------------------------------------------------ one road


def test_api_and_batch_give_the_same_faces_and_bytes(tiny_checkpoint, face_jpg, tmp_path):
    # Non-default detector settings and colour match: the service ignored all three before.
    settings = dict(min_face=30, det_threshold=0.9, color_match=True)
    photo = tmp_path / "blake.jpg"
    photo.write_bytes(face_jpg)
    options = RestoreOptions(model=str(tiny_checkpoint), detector="mtcnn", parser=None, allow_download=False,
                             bg_upsampler=None, upscale=2, weight=0.7, ext="png", save_faces=False,
                             report=tmp_path / "report.json", **settings)
    summary = run_batch([photo], tmp_path / "out", options)
    assert summary.succeeded == 1 and summary.faces == 2, summary.report()
    batch_bytes = (tmp_path / "out" / "restored_imgs" / "blake.png").read_bytes()
    batch_faces = json.loads((tmp_path / "report.json").read_text())["files"][0]["faces"]

    with _client(serve_config(tiny_checkpoint, **settings)) as client:
        fields = {"upscale": "2", "weight": "0.7", "format": "png"}
        files = {"image": ("blake.jpg", face_jpg, "image/jpeg")}
        image = client.post("/v1/restore", files=files, data=fields)
        body = client.post("/v1/restore?output=json", files=files, data=fields).json()
    assert image.status_code == 200, image.text
    assert image.content == batch_bytes  # the same pixels, encoded the same way
    api_faces = body["face_records"]
    assert [f["box"] for f in api_faces] == [f["box"] for f in batch_faces]
    assert [f["landmarks"] for f in api_faces] == [f["landmarks"] for f in batch_faces]
    assert all(f["color_matched"] for f in api_faces)
    strip = lambda faces: [{k: v for k, v in f.items() if k != "outputs"} for f in faces]  # noqa: E731
    assert strip(api_faces) == strip(batch_faces)  # scores, weights, notes: the report's records
    assert body["faces"] == 2 and [b["box"] for b in body["boxes"]] == [f["box"] for f in api_faces]


def test_min_face_applies_to_requests(tiny_checkpoint, face_jpg):
    with _client(serve_config(tiny_checkpoint, min_face=10_000)) as client:
        r = client.post("/v1/restore", files={"image": ("blake.jpg", face_jpg, "image/jpeg")}, data={})
    assert r.status_code == 200 and r.headers["x-faces"] == "0"


def test_serve_takes_the_restoration_flags(tiny_checkpoint):
    from facerestore.cli import build_parser
    from facerestore.cli.serve import config_from_args

    args = build_parser().parse_args(["serve", "--model", str(tiny_checkpoint), "--min-face", "30", "--det-threshold",
                                      "0.9", "--color-match", "--no-landmark-check", "--parser", "none"])
    config = config_from_args(args).validate()
    restore = config.restore
    assert (restore.min_face, restore.det_threshold, restore.color_match, restore.landmark_check) == (30, 0.9, True,
                                                                                                      False)
    assert restore.parser is None and restore.identity_model is None  # "none" read once, by validate


# ------------------------------------------------------------------ every model checked at start


@pytest.fixture
def no_listening(monkeypatch):
    """`facerestore serve` must stop before it listens; if it got that far, fail instead of serving."""
    import uvicorn

    def listening(*args, **kwargs):
        raise AssertionError("the server started despite a bad model")

    monkeypatch.setattr(uvicorn, "run", listening)


@pytest.mark.parametrize("bad", ["missing", "esrgan"])
def test_every_model_is_checked_at_start(tiny_checkpoint, esrgan, tmp_path, capsys, no_listening, bad):
    from facerestore import cli

    second = str(tmp_path / "missing.pth") if bad == "missing" else str(esrgan)
    code = cli.main(["serve", "--model", str(tiny_checkpoint), "--model", second, "--detector", "mtcnn",
                     "--parser", "none", "--no-download", "--port", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "--model" in err and Path(second).name in err
    if bad == "esrgan":
        assert "RRDBNet" in err and "GFPGAN" in err


def test_a_bg_upsampler_of_the_wrong_kind_is_refused_at_start(tiny_checkpoint, capsys, no_listening):
    from facerestore import cli

    code = cli.main(["serve", "--model", str(tiny_checkpoint), "--bg_upsampler", str(tiny_checkpoint),
                     "--detector", "mtcnn", "--parser", "none", "--no-download", "--port", "1"])
    assert code == 2 and "--bg_upsampler" in capsys.readouterr().err


def test_no_response_holds_a_server_path(tiny_checkpoint, esrgan, tmp_path):
    missing = tmp_path / "secret-folder" / "missing.pth"
    models = [str(tiny_checkpoint), str(missing), str(esrgan)]
    config = serve_config(tiny_checkpoint).replace(parser="parsenet", models=models)
    with _client(config) as client:
        texts = []
        for model in ("missing", "tiny_esrgan"):
            r = client.post("/v1/restore", files={"image": ("a.png", png_bytes(), "image/png")}, data={"model": model})
            assert r.status_code == 503 and model in r.json()["detail"]
            texts.append(r.text)
        assert client.post("/v1/restore", files={"image": ("a.png", png_bytes(), "image/png")}).status_code == 200
        models = client.get("/v1/models")
        texts.append(models.text)
        assert models.json()["notes"]  # ParseNet is not in the empty cache: a note, without where it looked
    bad_default = serve_config(missing)
    with _client(bad_default) as client:
        assert client.post("/v1/restore", files={"image": ("a.png", png_bytes(), "image/png")}).status_code == 503
        texts.append(client.get("/readyz").text)
    for text in texts:
        for secret in (str(tmp_path), str(Path(tiny_checkpoint).parent), "empty-cache", "Known names"):
            assert secret not in text, text


# ------------------------------------------------------------------ the query


def test_query_options_other_than_output_are_refused(tiny_checkpoint):
    with _client(serve_config(tiny_checkpoint)) as client:
        files = {"image": ("a.png", png_bytes(40, 30), "image/png")}
        r = client.post("/v1/restore?upscale=3&weight=1", files=files)
        assert r.status_code == 400 and "upscale, weight" in r.json()["detail"] and r.json()["field"] == "upscale"
        assert "form fields" in r.json()["detail"]
        r = client.post("/v1/restore?output=json", files=files, data={"upscale": "1"})
        assert r.status_code == 200 and r.json()["output"]["width"] == 40
