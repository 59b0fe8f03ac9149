"""ONNX export: onnxruntime gives PyTorch's output (<= 1e-4) at any batch size; files appear whole."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from facerestore import cli  # noqa: E402
from facerestore.archs.gfpgan import GFPGANv1, GFPGANv1Clean  # noqa: E402
from facerestore.archs.rrdbnet import RRDBNet  # noqa: E402
from facerestore.export.onnx import export_onnx, onnx_session  # noqa: E402
from facerestore.models import zoo  # noqa: E402
from stand_ins import TINY_GFPGAN, randomized  # noqa: E402


def _run(path: Path, x: torch.Tensor) -> np.ndarray:
    return onnx_session(path).run(None, {"input": x.numpy()})[0]


@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1])
def test_gfpgan_onnx_matches_pytorch_at_any_batch(cls: type, tmp_path: Path) -> None:
    model = randomized(cls(**TINY_GFPGAN))
    report = export_onnx(model, tmp_path / "face.onnx")
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4
    assert report.dynamic_axes["input"] == {0: "batch"}
    for batch in (1, 3):  # traced with 2: batch 1 (the one-sample path in PyTorch) and 3 must work too
        x = torch.rand(batch, 3, 32, 32) * 2 - 1
        with torch.inference_mode():
            want = model(x, return_rgb=False, randomize_noise=False)[0].numpy()  # stored noise
        got = _run(tmp_path / "face.onnx", x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4
        assert np.abs(want).max() > 0.05  # a real output, not a degenerate one


@pytest.mark.parametrize("scale", [2, 4])
def test_upscaler_onnx_dynamic_size(scale: int, tmp_path: Path) -> None:
    model = randomized(RRDBNet(3, 3, scale=scale, num_feat=8, num_block=1, num_grow_ch=4))
    export_onnx(model, tmp_path / "up.onnx", size=16)
    x = torch.rand(2, 3, 12, 20)  # another batch, height and width than the example
    with torch.inference_mode():
        want = model(x).numpy()
    got = _run(tmp_path / "up.onnx", x)
    assert got.shape == (2, 3, 12 * scale, 20 * scale)
    assert np.abs(got - want).max() <= 1e-4


def test_failed_check_writes_nothing_and_keeps_old_file(tmp_path: Path) -> None:
    model = randomized(RRDBNet(3, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4))
    target = tmp_path / "up.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="nothing written"):
        export_onnx(model, target, size=16, tolerance=-1.0)  # no graph can pass
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["up.onnx"]  # no temporary left behind


def test_refuses_networks_that_are_not_restoration_or_upscaling(tmp_path: Path) -> None:
    from facerestore.archs.discriminators import StyleGAN2Discriminator

    with pytest.raises(ValueError, match="cannot be exported"):
        export_onnx(StyleGAN2Discriminator(16, channel_multiplier=1, narrow=1 / 32), tmp_path / "d.onnx")
    with pytest.raises(ValueError, match="takes 32x32"):
        export_onnx(randomized(GFPGANv1Clean(**TINY_GFPGAN)), tmp_path / "f.onnx", size=64)
    assert not list(tmp_path.iterdir())


def test_cli_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    model = randomized(GFPGANv1Clean(**TINY_GFPGAN))
    ckpt = tmp_path / "tiny.pth"
    torch.save({"params_ema": model.state_dict()}, ckpt)  # the release layout
    out = tmp_path / "out" / "tiny.onnx"
    assert cli.main(["export", str(ckpt), str(out)]) == 0
    assert "GFPGANv1Clean" in capsys.readouterr().out
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        want = model(x, return_rgb=False, randomize_noise=False)[0].numpy()
    assert np.abs(_run(out, x) - want).max() <= 1e-4
    assert cli.main(["export", str(ckpt), str(tmp_path / "tiny.txt")]) == 1  # not .onnx: refused
    assert not (tmp_path / "tiny.txt").exists()


def test_cli_export_takes_no_download_like_the_other_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    """Issue 14, finding 10: `export --no-download` was refused by the parser."""
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")  # never a download, whatever happens
    asked = []
    ensure = zoo.ensure_model_file

    def recording(entry, *, allow_download=True, **kwargs):
        asked.append(allow_download)
        return ensure(entry, allow_download=allow_download, **kwargs)

    monkeypatch.setattr(zoo, "ensure_model_file", recording)
    assert cli.main(["export", "v1.4", str(tmp_path / "v14.onnx"), "--no-download"]) == 1
    assert asked == [False] and "v1.4" in capsys.readouterr().err
    assert not (tmp_path / "v14.onnx").exists()


def test_onnxruntime_model_stands_in_for_the_module() -> None:
    from facerestore.export.onnx import OnnxRuntimeModel
    from facerestore.models.descriptor import describe

    model = randomized(GFPGANv1Clean(**TINY_GFPGAN))
    runner = OnnxRuntimeModel.from_module(model, threads=1)
    assert describe(runner) == describe(model)  # the pipeline sees the same kind of network
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        want = model(x, return_rgb=False, randomize_noise=False)[0]
    image, rgbs = runner(x, return_rgb=False, randomize_noise=False)
    assert rgbs == [] and image.dtype == torch.float32
    assert (image - want).abs().max() <= 1e-4
    with pytest.raises(ValueError, match="randomize_noise=False"):
        runner(x, return_rgb=False)  # fresh noise is not in the graph: refused, not ignored


def test_sessions_leave_the_cores_alone_between_runs(tmp_path: Path) -> None:
    # onnxruntime's default keeps its worker threads spinning after a run (~24 ms of CPU here),
    # which slowed whatever the pipeline ran next on the same cores up to 3x: ours do not spin
    import time

    nn = torch.nn
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    x = torch.rand(1, 3, 64, 64)
    path = tmp_path / "net.onnx"
    torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["input"])
    session = onnx_session(path, threads=2)
    burnt = []
    for _ in range(3):
        session.run(None, {"input": x.numpy()})
        start = time.process_time()
        time.sleep(0.1)
        burnt.append(time.process_time() - start)
    assert min(burnt) < 0.005, f"onnxruntime threads used {min(burnt) * 1e3:.1f} ms of CPU while idle"
