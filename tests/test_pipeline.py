"""The shared pipeline: options validated once, roles checked at start-up, results never lost,
limits on what a run creates, and a front-end that needs no argparse."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facerestore import cli
from facerestore.archs.arcface import ResNetArcFace
from facerestore.archs.gfpgan import GFPGANv1Clean
from facerestore.archs.parsenet import ParseNet
from facerestore.archs.rrdbnet import RRDBNet
from facerestore.models import CheckpointError, Purpose, load
from facerestore.pipeline import batch
from facerestore.pipeline.options import OptionsError, RestoreOptions
from facerestore.pipeline.restorer import Restorer, landmark_batch

TINY = dict(num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.125, different_w=True,
            input_is_latent=True, sft_half=True)
LANDMARKS = np.array([[60.0, 70.0], [100.0, 70.0], [80.0, 95.0], [64.0, 118.0], [96.0, 118.0]], np.float32)


def _save(model: torch.nn.Module, path: Path, layout: str = "params_ema") -> Path:
    torch.save({layout: model.state_dict()} if layout else model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    return {
        "clean512": _save(GFPGANv1Clean(out_size=512, **TINY), folder / "clean512.pth"),
        "clean256": _save(GFPGANv1Clean(out_size=256, **TINY), folder / "clean256.pth"),
        "rrdb": _save(RRDBNet(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4),
                      folder / "esrgan.pth"),
        "parsenet": _save(ParseNet(in_size=512, out_size=512, parsing_ch=19), folder / "parsenet.pth", ""),
        "arcface": _save(ResNetArcFace(block="IRBlock", layers=(1, 1, 1, 1), use_se=False),
                         folder / "arcface.pth", ""),
    }


pytestmark = pytest.mark.usefixtures("offline_zoo")  # no downloads, an empty model cache


def _photo(path: Path, size=(160, 200)) -> Path:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return path


def _options(model: Path, **changes) -> RestoreOptions:
    return RestoreOptions(model=str(model), detector="mtcnn", parser=None, bg_upsampler=None,
                          allow_download=False, **changes)


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("field, value, flag", [
    ("upscale", float("nan"), "-s/--upscale"), ("upscale", float("inf"), "-s/--upscale"),
    ("upscale", 100.0, "-s/--upscale"), ("upscale", 0.5, "-s/--upscale"),
    ("weight", 2.0, "-w/--weight"), ("weight", float("nan"), "-w/--weight"), ("weight", None, "-w/--weight"),
    ("bg_tile", -5, "--bg_tile"), ("bg_tile", 8, "--bg_tile"), ("ext", "gif", "--ext"),
    ("seed", -1, "--seed"), ("device", "gpu7", "--device"), ("suffix", "a/b", "--suffix"),
])
def test_each_bad_option_is_named(field, value, flag):
    with pytest.raises(OptionsError) as err:
        RestoreOptions(**{field: value}).validate()
    assert err.value.option == flag


def test_defaults_are_valid_and_match_the_official_cli():
    opts = RestoreOptions().validate()
    assert (opts.upscale, opts.weight, opts.bg_tile, opts.ext, opts.model) == (2.0, 0.5, 400, "auto", "v1.4")


@pytest.mark.parametrize("argv, flag", [
    (["-s", "nan"], "-s/--upscale"), (["-s", "inf"], "-s/--upscale"), (["-w", "2"], "-w/--weight"),
    (["-w", "nan"], "-w/--weight"), (["--bg_tile", "-5"], "--bg_tile"), (["-v", "9"], "-v/--version"),
])
def test_cli_refuses_bad_flags_before_any_work(shared_data, tmp_path, capsys, argv, flag):
    out = tmp_path / "out"
    assert cli.main(["restore", "-i", str(shared_data / "photos"), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and flag in err  # one message naming the flag, not one per file
    assert not out.exists()


def test_unwritable_output_folder_fails_at_start(tmp_path, weights, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    photo = _photo(tmp_path / "p.png")
    assert cli.main(["restore", "-i", str(photo), "-o", str(blocker / "out"), "--model",
                     str(weights["clean512"]), "--parser", "none", "--detector", "mtcnn"]) == 2
    assert "-o/--output" in capsys.readouterr().err


# --------------------------------------------------------------------------- roles


@pytest.mark.parametrize("name", ["rrdb", "parsenet", "arcface"])
def test_model_of_the_wrong_kind_is_refused_at_start_up(weights, name):
    with pytest.raises(CheckpointError, match=r"--model.*GFPGAN"):
        Restorer(model=weights[name], detector="mtcnn", parser=None, allow_download=False)


def test_parser_and_upsampler_roles_are_checked(weights):
    with pytest.raises(CheckpointError, match=r"--parser.*ParseNet.*RRDBNet"):
        Restorer(model=weights["clean512"], detector="mtcnn", parser=weights["rrdb"], allow_download=False)
    with pytest.raises(CheckpointError, match=r"--bg_upsampler.*Real-ESRGAN.*ParseNet"):
        Restorer(model=weights["clean512"], detector="mtcnn", parser=None, bg_upsampler=weights["parsenet"],
                 allow_download=False)


def test_cli_wrong_model_fails_once_before_reading_photos(shared_data, weights, tmp_path, capsys):
    code = cli.main(["restore", "-i", str(shared_data / "photos"), "-o", str(tmp_path / "o"),
                     "--model", str(weights["rrdb"]), "--detector", "mtcnn", "--parser", "none"])
    assert code == 2  # a start-up error, like a bad flag
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "RRDBNet" in err
    assert not (tmp_path / "o" / "restored_imgs").exists()


def test_descriptor_says_how_to_call_each_network(weights):
    face = load(weights["clean256"], purpose=Purpose.FACE_RESTORATION)
    described = face.descriptor
    assert (described.input_size, described.input_range, described.takes_noise) == (256, (-1.0, 1.0), True)
    up = load(weights["rrdb"])
    assert (up.descriptor.purpose, up.descriptor.scale) == (Purpose.UPSCALING, 4)


def test_256_pixel_gfpgan_restores_a_face(weights):
    restorer = Restorer(model=weights["clean256"], detector="mtcnn", parser=None, upscale=1, allow_download=False)
    img = np.full((200, 160, 3), 120, np.uint8)
    crops, faces, pasted = restorer.enhance(img, landmarks=[LANDMARKS], weight=1)
    assert crops[0].shape == faces[0].shape == (256, 256, 3)
    assert pasted.shape == img.shape
    assert not np.array_equal(pasted, img)  # the face region was replaced


# --------------------------------------------------------------------------- landmarks


def test_landmarks_are_checked_not_reshaped():
    assert landmark_batch(LANDMARKS).shape == (1, 5, 2)
    assert landmark_batch([LANDMARKS, LANDMARKS + 1]).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="transposed"):
        landmark_batch(LANDMARKS.T)
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        landmark_batch(np.concatenate([LANDMARKS, LANDMARKS]))  # (10, 2): not two faces
    with pytest.raises(ValueError, match="nan"):
        landmark_batch(np.full((5, 2), np.nan))


def test_weight_not_a_number_is_a_clear_error_and_none_means_the_options_weight(weights):
    restorer = Restorer(model=weights["clean512"], detector="mtcnn", parser=None, allow_download=False, weight=0)
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="weight must be a number"):
        restorer.enhance(img, landmarks=[LANDMARKS], weight="0.5")
    cropped, restored, _ = restorer.enhance(img, landmarks=[LANDMARKS], weight=None)
    assert np.array_equal(cropped[0], restored[0])  # the options' weight 0: the input face


# --------------------------------------------------------------------------- results are never lost


def _faces_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "restored_faces").glob("*.png"))}


def test_failed_rerun_keeps_the_earlier_results(weights, tmp_path, monkeypatch):
    photo = _photo(tmp_path / "p.png")
    out = tmp_path / "out"
    options = _options(weights["clean512"], upscale=1)

    class OneFace:  # detection without weights: one face at fixed landmarks
        def detect(self, img, conf_threshold=0.97):
            row = np.concatenate([[40, 50, 120, 140, 0.99], LANDMARKS.ravel()]).astype(np.float32)
            return row[None]

    restorer = Restorer(options, detector=OneFace())
    first = batch.run_batch([photo], out, options, restorer=restorer)
    assert first.succeeded == 1 and first.faces == 1
    before = _faces_of(out)
    assert before and (out / "restored_imgs" / "p.png").is_file()

    # A re-run that fails while writing (the last file of the group cannot be encoded).
    real_encode = batch.encode_image

    def failing(image, ext, quality=95, *, name="image"):
        if "restored_imgs" in str(name):
            raise batch.ImageWriteError(name, "disk full (simulated)")
        return real_encode(image, ext, quality, name=name)

    monkeypatch.setattr(batch, "encode_image", failing)
    second = batch.run_batch([photo], out, options.replace(seed=3), restorer=restorer)
    assert second.failures and "disk full" in second.failures[0][1]
    assert _faces_of(out) == before  # nothing that was complete before is gone or changed
    assert not [p for p in out.rglob(".*.tmp")]  # no temporary left behind


def test_input_inside_an_output_folder_is_refused_before_any_work(weights, tmp_path):
    out = tmp_path / "out"
    inp = _photo((out / "restored_imgs").mkdir(parents=True) or out / "restored_imgs" / "p.png")
    original = inp.read_bytes()
    with pytest.raises(OptionsError, match="choose another output folder"):
        batch.run_batch([inp], out, _options(weights["clean512"]))
    assert inp.read_bytes() == original


def test_output_size_is_bounded_before_the_work(weights, tmp_path):
    photo = _photo(tmp_path / "p.png", size=(200, 160))
    options = _options(weights["clean512"], upscale=16, max_output_pixels=1_000_000)
    summary = batch.run_batch([photo], tmp_path / "out", options)
    assert summary.failures and "over the output limit" in summary.failures[0][1]
    assert not (tmp_path / "out" / "restored_imgs").exists()


def test_ctrl_c_ends_with_a_summary(weights, tmp_path, monkeypatch):
    photos = [_photo(tmp_path / f"p{i}.png") for i in range(3)]
    seen = []

    def on_file(result):
        seen.append(result.path)
        if len(seen) == 2:
            raise KeyboardInterrupt

    summary = batch.run_batch(photos, tmp_path / "out", _options(weights["clean512"]), on_file=on_file)
    assert summary.interrupted and len(summary.results) == 2
    assert summary.report().startswith("interrupted after 2 of 3 files")


# --------------------------------------------------------------------------- a second front-end


def test_a_front_end_without_argparse_restores_photos(shared_data, weights, tmp_path):
    """What the web service and video jobs do: fill the options, call the pipeline, read results."""
    notes: list[str] = []
    options = RestoreOptions(model=str(weights["clean512"]), detector="mtcnn", parser=None,
                             bg_upsampler="realesrgan", upscale=1.5, weight=1.0, allow_download=False)
    files = sorted((shared_data / "photos").iterdir())
    summary = batch.run_batch(files, tmp_path / "web-out", options, on_note=notes.append)
    assert summary.succeeded == 3 and summary.faces == 7 and not summary.failures
    assert any("resized instead" in n for n in notes)  # the CPU note reaches the front-end, not stdout
    out = cv2.imread(str(tmp_path / "web-out" / "restored_imgs" / "00.jpg"))
    src = cv2.imread(str(shared_data / "photos" / "00.jpg"))
    assert out.shape[:2] == (int(src.shape[0] * 1.5), int(src.shape[1] * 1.5))
    assert sum(len(r.outputs) for r in summary.results) == 7 * 3 + 3  # (crop, face, cmp) per face + images


def test_oversized_result_is_refused_before_decoding(weights, tmp_path, monkeypatch):
    photo = _photo(tmp_path / "p.png", size=(200, 160))
    monkeypatch.setattr(batch, "read_image", lambda *a, **k: pytest.fail("decoded before the size check"))
    summary = batch.run_batch([photo], tmp_path / "out", _options(weights["clean512"], upscale=16,
                                                                  max_output_pixels=1_000_000))
    assert "over the output limit" in summary.failures[0][1]


def test_cli_names_a_link_loop_and_skipped_entries(weights, tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert cli.main(["restore", "-i", str(loop), "-o", str(tmp_path / "o"), "--model", str(weights["clean512"])]) == 2
    assert "symbolic link loop" in capsys.readouterr().err


def test_half_precision_only_for_half_safe_networks(weights):
    from facerestore.models import ModelDescriptor

    assert load(weights["clean512"]).descriptor.half_safe  # fp32 style norm and demodulation inside

    class UnknownNet(torch.nn.Module):
        descriptor = ModelDescriptor("Mine", Purpose.FACE_RESTORATION, input_size=512, input_range=(-1.0, 1.0))

        def forward(self, x):
            return x, None

    restorer = Restorer(model=UnknownNet(), detector="mtcnn", parser=None, half=True, allow_download=False)
    assert restorer.dtype == torch.float32
    assert any("runs in fp32" in note for note in restorer.notes)
