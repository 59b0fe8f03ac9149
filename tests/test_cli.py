"""The `facerestore` command end to end, with a small GFPGANv1Clean written in the release layout."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facerestore import cli
from facerestore.models import zoo

pytestmark = pytest.mark.usefixtures("offline_zoo")  # no downloads, an empty model cache


def _restore(inp: Path, out: Path, ckpt: Path, *extra: str) -> int:
    return cli.main(["restore", "-i", str(inp), "-o", str(out), "--model", str(ckpt), "--detector", "mtcnn",
                     "--parser", "none", "--bg_upsampler", "none", *extra])


def _tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_restores_all_seven_faces_of_the_photos(shared_data, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert _restore(shared_data / "photos", out, tiny_checkpoint, "-s", "2") == 0
    restored = sorted(p.name for p in (out / "restored_imgs").iterdir())
    assert restored == ["00.jpg", "10045.png", "Blake_Lively.jpg"]
    for name in restored:
        src = cv2.imread(str(shared_data / "photos" / name))
        dst = cv2.imread(str(out / "restored_imgs" / name))
        assert dst.shape[:2] == (src.shape[0] * 2, src.shape[1] * 2)
    crops = sorted(p.name for p in (out / "cropped_faces").iterdir())
    assert len(crops) == 7 and crops[0] == "00_00.png"
    assert len(list((out / "restored_faces").iterdir())) == 7
    cmp = cv2.imread(str(out / "cmp" / "00_00.png"))
    assert cmp.shape == (512, 1024, 3)
    report = capsys.readouterr().out
    assert "3/3 files restored, 7 faces, 0 failed" in report


def test_bad_files_are_reported_and_the_rest_is_processed(shared_data, tiny_checkpoint, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(shared_data / "aligned" / "Adele_crop.png", inp / "good.png")
    good = (inp / "good.png").read_bytes()
    (inp / "truncated.png").write_bytes(good[: len(good) // 3])
    (inp / "empty.jpg").write_bytes(b"")
    (inp / "notes.jpg").write_text("not an image")
    cv2.imwrite(str(inp / "huge.png"), np.zeros((800, 800, 3), np.uint8))  # over the limit below
    out = tmp_path / "out"
    assert _restore(inp, out, tiny_checkpoint, "--aligned", "--max-pixels", "300000") == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    for name in ("truncated.png", "empty.jpg", "notes.jpg", "huge.png"):
        assert sum(name in line for line in captured.err.splitlines()) == 1
    produced = {p.name for p in out.rglob("*") if p.is_file()}
    assert produced == {"good_00.png"}  # in cropped_faces, restored_faces and cmp; nothing for bad files
    assert len(list(out.rglob("*.png"))) == 3
    assert "exceeds the limit" in captured.err
    assert "1/5 files restored" in captured.out and "4 failed" in captured.out


def test_output_into_the_input_folder_never_touches_inputs(shared_data, tiny_checkpoint, tmp_path):
    inp = tmp_path / "photos"
    inp.mkdir()
    shutil.copy(shared_data / "photos" / "Blake_Lively.jpg", inp)
    before = _tree_hash(inp)
    assert _restore(inp, inp, tiny_checkpoint, "-s", "1") == 0
    after = _tree_hash(inp)
    assert after["Blake_Lively.jpg"] == before["Blake_Lively.jpg"]
    assert "restored_imgs/Blake_Lively.jpg" in after
    # A second run over the same folder sees only the original photo as input.
    assert _restore(inp, inp, tiny_checkpoint, "-s", "1") == 0
    assert _tree_hash(inp)["Blake_Lively.jpg"] == before["Blake_Lively.jpg"]


def test_official_flags_parse_with_their_spellings():
    args = cli.build_parser().parse_args(
        ["restore", "-i", "in", "-o", "out", "-v", "1.3", "-s", "4", "--bg_upsampler", "none", "--bg_tile", "0",
         "--suffix", "x", "--only_center_face", "--aligned", "--ext", "png", "-w", "0.7"])
    assert (args.input, args.output, args.version, args.upscale, args.bg_upsampler, args.bg_tile) == (
        "in", "out", "1.3", 4, "none", 0)
    assert args.suffix == "x" and args.only_center_face and args.aligned and args.ext == "png"
    assert args.weight == 0.7
    defaults = cli.build_parser().parse_args(["restore"])
    assert (defaults.upscale, defaults.bg_tile, defaults.weight, defaults.ext) == (2, 400, 0.5, "auto")


def test_missing_weights_give_a_clear_message(tmp_path, capsys, shared_data):
    code = cli.main(["-i", str(shared_data / "aligned"), "-o", str(tmp_path / "o"), "-v", "1.4"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "GFPGANv1.4.pth" in err and "put it at" in err


def test_suffix_and_ext_name_outputs_like_the_official(shared_data, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(shared_data / "photos" / "Blake_Lively.jpg", inp)
    assert _restore(inp, out, tiny_checkpoint, "--suffix", "v14", "--ext", "png", "-s", "1") == 0
    assert (out / "restored_imgs" / "Blake_Lively_v14.png").is_file()
    faces = {p.name for p in (out / "restored_faces").iterdir()}
    assert faces == {"Blake_Lively_00_v14.png", "Blake_Lively_01_v14.png"}


def test_models_lists_the_zoo(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    for entry in zoo.MODELS:
        assert entry.name in out


def test_models_download_offline_fails_clearly(capsys):
    assert cli.main(["models", "--download", "v1.3"]) == 1
    assert "GFPGANv1.3.pth" in capsys.readouterr().err


def test_help_works(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["restore", "--help"])
    assert info.value.code == 0
    assert "--bg_upsampler" in capsys.readouterr().out


def _write_kinds(folder: Path, face_bgr: np.ndarray) -> None:
    """The inputs people really have, each built from a real aligned face."""
    from PIL import Image

    rgb = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2RGB)
    cv2.imwrite(str(folder / "grey.png"), cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY))
    alpha = np.full(face_bgr.shape[:2], 255, np.uint8)
    alpha[:, :64] = 0
    cv2.imwrite(str(folder / "alpha.png"), np.dstack([face_bgr, alpha]))
    cv2.imwrite(str(folder / "deep.png"), face_bgr.astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    # Stored lying on its side, shown upright by EXIF orientation 6 (rotate 90° clockwise).
    wide = rgb[56:456]  # 400 tall, 512 wide when upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(wide, 1).copy()).save(folder / "rotated.jpg", exif=exif)
    named = folder / "фото 写真"
    named.mkdir()
    with open(named / "é.png", "wb") as f:
        f.write(cv2.imencode(".png", face_bgr)[1].tobytes())


def test_every_input_kind_comes_back_as_it_went_in(shared_data, tiny_checkpoint, tmp_path):
    face = cv2.imread(str(shared_data / "aligned" / "Adele_crop.png"))
    inp = tmp_path / "in"
    inp.mkdir()
    _write_kinds(inp, face)
    out = tmp_path / "out"
    assert _restore(inp, out, tiny_checkpoint, "-s", "1") == 0
    assert _restore(inp / "фото 写真", out, tiny_checkpoint, "-s", "1") == 0
    res = out / "restored_imgs"

    def read(name):
        return cv2.imdecode(np.fromfile(res / name, np.uint8), cv2.IMREAD_UNCHANGED)

    assert read("grey.png").shape == (512, 512)
    alpha = read("alpha.png")
    assert alpha.shape == (512, 512, 4) and alpha[:, :60, 3].max() == 0 and alpha[:, 70:, 3].min() == 255
    deep = read("deep.png")
    assert deep.dtype == np.uint16 and deep.shape == (512, 512, 3)
    assert read("palette.png").shape == (512, 512, 3)
    assert read("cmyk.jpg").shape == (512, 512, 3)
    assert read("rotated.jpg").shape == (400, 512, 3)  # upright
    assert read("é.png").shape == (512, 512, 3)
    # Every one of them had its face found and restored.
    assert len(list((out / "restored_faces").iterdir())) == 7


def test_convert_bilinear_checkpoint_to_clean(tmp_path, capsys):
    from facerestore.archs.gfpgan import GFPGANBilinear
    from facerestore.models.loading import load_model

    kwargs = dict(out_size=64, num_style_feat=32, channel_multiplier=2, num_mlp=2, narrow=0.25,
                  input_is_latent=True, different_w=True, sft_half=True)
    torch.manual_seed(1)
    bilinear = GFPGANBilinear(**kwargs).eval()
    src = tmp_path / "bilinear.pth"
    torch.save({"params_ema": bilinear.state_dict()}, src)
    for name in ("clean.pth", "clean.safetensors"):
        assert cli.main(["convert", str(src), str(tmp_path / name)]) == 0
        clean = load_model(tmp_path / name)
        assert type(clean).__name__ == "GFPGANv1Clean"
        x = torch.rand(2, 3, 64, 64) * 2 - 1
        with torch.inference_mode():
            a = bilinear(x, return_rgb=False, randomize_noise=False)[0]
            b = clean(x, return_rgb=False, randomize_noise=False)[0]
        assert (a - b).abs().max() < 1e-4
    assert "GFPGANv1Clean" in capsys.readouterr().out
    # Refuses what is not a bilinear model, and never overwrites its input.
    assert cli.main(["convert", str(tmp_path / "clean.pth"), str(tmp_path / "again.pth")]) == 1
    assert cli.main(["convert", str(src), str(src)]) == 2


def test_ext_jpg_on_a_transparent_input_drops_alpha_with_a_note(shared_data, tiny_checkpoint, tmp_path, capsys):
    face = cv2.imread(str(shared_data / "aligned" / "Adele_crop.png"))
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "cut.png"), np.dstack([face, np.full(face.shape[:2], 255, np.uint8)]))
    out = tmp_path / "out"
    assert _restore(inp, out, tiny_checkpoint, "-s", "1", "--ext", "jpg") == 0
    assert "alpha channel is dropped" in capsys.readouterr().err
    assert cv2.imread(str(out / "restored_imgs" / "cut.jpg")).shape == (512, 512, 3)


def test_convert_names_the_file_it_cannot_use(tmp_path, capsys):
    bad = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, bad)
    assert cli.main(["convert", str(bad), str(tmp_path / "out.pth")]) == 1
    assert "mystery.pth" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


def test_inputs_sharing_a_stem_do_not_overwrite_each_other(shared_data, tiny_checkpoint, tmp_path):
    face = cv2.imread(str(shared_data / "aligned" / "Adele_crop.png"))
    inp = tmp_path / "in"
    inp.mkdir()
    cv2.imwrite(str(inp / "a.png"), face)
    cv2.imwrite(str(inp / "a.jpg"), face)
    out = tmp_path / "out"
    assert _restore(inp, out, tiny_checkpoint, "--aligned") == 0
    assert {p.name for p in (out / "restored_faces").iterdir()} == {"a_jpg_00.png", "a_png_00.png"}


def test_official_long_version_flag_restores_instead_of_printing_the_version(tmp_path, capsys):
    # `--version 1.3 -i x` is inference_gfpgan.py's model-version flag; it used to print our
    # version and exit 0 without restoring anything.
    assert cli.main(["--version", "1.3", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("facerestore ")


@pytest.mark.parametrize("command", ["restore", "evaluate", "serve"])
def test_help_states_defaults_that_are_true(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: True)" not in text and "(default: False)" not in text
    assert re.search(r"\(default: [^)]*\) \(default:", text) is None  # said twice
    if command == "restore":
        assert "cannot be a face --report" in text  # --no-landmark-check: no "(default: True)"
        assert "optical flow between (default: 1)" in text  # 1 == True must still be shown


def test_models_names_a_cached_file_of_the_wrong_size(tmp_path, capsys):
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    (cache / "GFPGANv1.4.pth").write_bytes(b"partial download")
    assert cli.main(["models", "--verify"]) == 1
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("v1.4 "))
    assert "BAD" in line and "16 bytes" in line
    assert "16 bytes, not the expected" in zoo.missing_message(zoo.find_entry("v1.4"), "offline")


def test_aligned_run_loads_no_parser_and_names_only_written_folders(shared_data, tiny_checkpoint, tmp_path,
                                                                    capsys):
    out = tmp_path / "out"
    assert cli.main(["restore", "-i", str(shared_data / "aligned" / "Adele_crop.png"), "-o", str(out),
                     "--model", str(tiny_checkpoint), "--aligned"]) == 0
    captured = capsys.readouterr()
    assert "ParseNet" not in captured.err and "Real-ESRGAN" not in captured.err  # nothing is pasted
    assert f"results in {out}/{{cropped_faces,restored_faces,cmp}}" in captured.out
    assert not (out / "restored_imgs").exists()


def test_report_and_json_never_overwrite_an_input(shared_data, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    shutil.copy(shared_data / "aligned" / "Adele_crop.png", inp / "a.png")
    before = (inp / "a.png").read_bytes()
    # refused before any model is loaded (there is none here), so both are cheap
    assert cli.main(["restore", "-i", str(inp), "-o", str(tmp_path / "o"), "--aligned",
                     "--report", str(inp / "a.png")]) == 2
    assert "--report" in capsys.readouterr().err
    assert cli.main(["evaluate", "--restored", str(inp), "--metrics", "niqe", "--json", str(inp / "a.png")]) == 2
    assert "--json" in capsys.readouterr().err
    assert (inp / "a.png").read_bytes() == before


@pytest.mark.parametrize("argv", [["components", "{data}", "-o", "{blocker}/boxes.pth"],
                                  ["convert", "{ckpt}", "{blocker}/clean.pth"],
                                  ["export", "{ckpt}", "{blocker}/model.onnx"]])
def test_unwritable_output_file_is_refused_before_the_work(argv, tmp_path, tiny_checkpoint, capsys):
    # A file where the output's folder should be: once a raw OSError after the whole detection
    # pass or export ("[enforce fail at inline_container.cc:747]", "[Errno 17] File exists").
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    data = tmp_path / "faces"
    data.mkdir()
    cv2.imwrite(str(data / "a.png"), np.zeros((64, 64, 3), np.uint8))
    filled = [a.format(data=data, blocker=blocker, ckpt=tiny_checkpoint) for a in argv]
    assert cli.main(filled) in (1, 2)
    err = capsys.readouterr().err
    assert f"cannot write to {blocker} (File exists)" in err and "Errno" not in err and "enforce" not in err


def test_models_table_keeps_its_columns(capsys):
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    header = lines[0]
    for line in lines[1:]:  # every row's status starts under "status"; no description cut short
        assert line[header.index("status"):].split()[0] in ("-", "ok"), line
    assert any("initialises the GFPGANv1 decoder for training" in line for line in lines)


def test_summarize_names_a_missing_folder(tmp_path, capsys):
    assert cli.main(["summarize", str(tmp_path / "typo")]) == 2
    assert "typo: no such folder" in capsys.readouterr().err


def test_unknown_model_names_the_flag(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((32, 32, 3), np.uint8))
    assert cli.main(["restore", "-i", str(tmp_path), "-o", str(tmp_path / "o"), "--model", "nothere.pth"]) != 0
    assert "(--model): 'nothere.pth' is neither a file nor a known model name" in capsys.readouterr().err
