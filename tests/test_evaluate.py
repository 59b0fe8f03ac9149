"""Network metrics (Deg, LPIPS) on random weights, and the evaluate command end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from _metric_images import synthetic_gt, synthetic_restored
from facerestore.cli import main as cli_main
from facerestore.metrics import identity, match_mean_std, psnr
from facerestore.metrics.lpips import LPIPS, load_lpips, to_lpips_input


def _arcface():
    from facerestore.archs.arcface import ResNetArcFace

    torch.manual_seed(1)
    return ResNetArcFace(block="IRBlock", layers=[2, 2, 2, 2], use_se=False).eval()


@pytest.fixture
def arcface_ckpt(tmp_path) -> Path:
    """A random-weight ArcFace in the released arcface_resnet18.pth layout (a bare state dict)."""
    path = tmp_path / "arcface_resnet18.pth"
    torch.save(_arcface().state_dict(), path)
    return path


def test_angle_formula():
    assert identity.angle_deg([1, 0], [0, 2]) == pytest.approx(90)
    assert identity.angle_deg([1, 1], [1, 0]) == pytest.approx(45)
    assert identity.angle_deg([1, 0], [-3, 0]) == pytest.approx(180)
    assert identity.angle_deg([1, 2, 3], [1, 2, 3]) == 0.0  # clipped: no NaN from a cosine of 1 + eps
    s = identity.summarize_angles([0.2, 30.0, 50.0, 0.99])
    assert (s.mean, s.kept, s.identical) == (40.0, 2, 2)
    assert math.isnan(identity.summarize_angles([0.5]).mean)


def test_preprocess_is_the_authors():
    gray = np.arange(64 * 80, dtype=np.uint32).reshape(64, 80).astype(np.uint8)
    x = identity.preprocess(gray)
    assert x.shape == (1, 128, 128) and x.dtype == np.float32
    expect = (cv2.resize(gray, (128, 128), interpolation=cv2.INTER_LINEAR).astype(np.float32) - 127.5) / 127.5
    assert np.array_equal(x[0], expect)


def test_identity_scorer_with_random_arcface():
    scorer = identity.IdentityScorer(_arcface())
    a = cv2.cvtColor(synthetic_gt(), cv2.COLOR_BGR2GRAY)
    b = np.ascontiguousarray(a[:, ::-1])
    assert scorer.angle(a, a) < 1e-2
    ab, ba = scorer.angle(a, b), scorer.angle(b, a)
    assert ab > 1 and ab == pytest.approx(ba, abs=1e-4)
    # The embedding is the network's output on the preprocessed batch, nothing more.
    with torch.no_grad():
        direct = scorer.net(torch.from_numpy(identity.preprocess(a)[None])).numpy()[0]
    assert np.allclose(scorer.embed([a])[0], direct, atol=1e-6)
    # Only an ArcFace is accepted.
    from facerestore.archs.rrdbnet import RRDBNet
    with pytest.raises(ValueError, match="ArcFace"):
        identity.IdentityScorer(RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4))


def test_lpips_properties_on_random_weights():
    torch.manual_seed(0)
    net = LPIPS().eval()
    for lin in (net.lin0, net.lin1, net.lin2, net.lin3, net.lin4):
        lin.model[1].weight.data.abs_()  # the released layers are non-negative
    gt = synthetic_gt(32, 40)
    x0, x1 = to_lpips_input(gt), to_lpips_input(synthetic_restored(gt))
    with torch.no_grad():
        assert float(net(x0, x0)[0]) == 0.0
        d01, d10 = float(net(x0, x1)[0]), float(net(x1, x0)[0])
    assert d01 > 0 and d01 == pytest.approx(d10, rel=1e-6)
    # Input mapping: BGR uint8 -> RGB in [-1, 1].
    assert x0.shape == (1, 3, 32, 40) and float(x0.min()) >= -1 and float(x0.max()) <= 1
    assert torch.allclose(x0[0, 0], torch.from_numpy(gt[..., 2] / 127.5 - 1).float(), atol=1e-6)
    # One layer alone: its weighted, spatially averaged squared difference of unit-normalised features.
    for k in range(5):
        getattr(net, f"lin{k}").model[1].weight.data.zero_()
    net.lin2.model[1].weight.data.fill_(1.0)
    with torch.no_grad():
        net_in = (x0 - net.shift) / net.scale
        f0, f1 = net.features[:16](net_in), net.features[:16]((x1 - net.shift) / net.scale)
        n0 = f0 / (f0.norm(dim=1, keepdim=True) + 1e-10)
        n1 = f1 / (f1.norm(dim=1, keepdim=True) + 1e-10)
        expect = ((n0 - n1) ** 2).sum(1).mean()
        assert float(net(x0, x1)[0]) == pytest.approx(float(expect), rel=1e-5)
    assert net_in.shape == x0.shape


def test_lpips_loads_the_released_layouts(tmp_path):
    torch.manual_seed(0)
    ref = LPIPS()
    # torchvision's vgg16 file: features.N.* plus a classifier we do not use.
    vgg = {f"features.{k}": v for k, v in ref.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)
    lins = {k: v.abs() for k, v in ref.state_dict().items() if k.startswith("lin")}
    assert sorted(lins) == [f"lin{k}.model.1.weight" for k in range(5)]
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save(lins, tmp_path / "vgg.pth")
    net = load_lpips(tmp_path / "vgg16.pth", tmp_path / "vgg.pth")
    assert torch.equal(net.features[28].weight, ref.features[28].weight)
    assert torch.equal(net.lin3.model[1].weight, lins["lin3.model.1.weight"])
    torch.save({"lin0.model.1.weight": lins["lin0.model.1.weight"]}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="layout"):
        load_lpips(tmp_path / "vgg16.pth", tmp_path / "bad.pth")


# ---------------------------------------------------------------- the command

def main(argv: list[str]) -> int:
    return cli_main(["evaluate", *argv])


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("FACERESTORE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("FACERESTORE_OFFLINE", "1")  # never reach the network from a test
    r, g = tmp_path / "restored", tmp_path / "gt"
    r.mkdir(), g.mkdir()
    gt = synthetic_gt()
    cv2.imwrite(str(g / "a.png"), gt)
    cv2.imwrite(str(r / "a.png"), synthetic_restored(gt))
    cv2.imwrite(str(g / "b.jpg"), gt, [cv2.IMWRITE_JPEG_QUALITY, 100])
    cv2.imwrite(str(r / "b.png"), gt)
    cv2.imwrite(str(r / "only_restored.png"), gt)
    cv2.imwrite(str(g / "only_gt.png"), gt)
    return r, g


def test_evaluate_table_and_json(folders, tmp_path, capsys):
    r, g = folders
    out = tmp_path / "res" / "metrics.json"
    assert main(["--restored", str(r), "--gt", str(g), "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr()
    assert "PSNR (dB)" in text.out and "SSIM" in text.out and "NIQE" in text.out
    assert "only_restored.png" in text.err and "only_gt.png" in text.err
    data = json.loads(out.read_text())
    # The pair 'a' is the synthetic pair whose authors'-protocol values BasicSR gave (test_metrics).
    assert data["per_image"]["a"]["psnr"] == pytest.approx(31.115020672890573, rel=1e-8)
    assert data["per_image"]["a"]["ssim"] == pytest.approx(0.715210909876853, abs=1e-8)
    assert data["per_image"]["a"]["niqe"] == pytest.approx(18.37828055745416, rel=1e-7)
    assert "psnr" not in data["per_image"]["only_restored"] and "niqe" in data["per_image"]["only_restored"]
    assert data["counts"] == {"psnr": 2, "ssim": 2, "niqe": 3}
    assert data["unpaired"] == {"restored_only": ["only_restored.png"], "gt_only": ["only_gt.png"],
                                "duplicate_stems": []}
    assert data["settings"]["correct_mean_std"] is True and data["failures"] == []
    assert not list(out.parent.glob(".*tmp"))  # the atomic write left nothing behind
    mean = np.mean([data["per_image"][s]["psnr"] for s in ("a", "b")])
    assert data["metrics"]["psnr"] == pytest.approx(mean)


def test_plain_basicsr_mode_and_identical_pair(folders, tmp_path):
    r, g = folders
    (g / "b.jpg").unlink()
    cv2.imwrite(str(g / "b.png"), synthetic_gt())
    out = tmp_path / "m.json"
    assert main(["--restored", str(r), "--gt", str(g), "--json", str(out), "--quiet", "--metrics", "psnr",
                 "--no-correct-mean-std", "--y-channel", "--crop-border", "4"]) == 0
    data = json.loads(out.read_text())
    assert data["per_image"]["b"]["psnr"] == "inf" and data["metrics"]["psnr"] == "inf"
    assert data["per_image"]["a"]["psnr"] == pytest.approx(35.673495008580204, rel=1e-10)


def test_size_mismatch_and_unreadable_files_are_reported(folders, capsys):
    r, g = folders
    cv2.imwrite(str(r / "a.png"), synthetic_gt(100, 120))
    (r / "b.png").write_bytes(b"not an image")
    assert main(["--restored", str(r), "--gt", str(g), "--metrics", "psnr,ssim", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "size 120x100 differs from the ground truth a.png (232x200)" in err
    assert "b.png: cannot be decoded" in err


def test_no_reference_metric_without_gt(folders, capsys):
    r, _ = folders
    assert main(["--restored", str(r), "--metrics", "niqe", "--quiet"]) == 0
    assert "3 images (no ground truth)" in capsys.readouterr().out
    assert main(["--restored", str(r), "--metrics", "psnr", "--quiet"]) == 2
    assert "--gt" in capsys.readouterr().err


@pytest.mark.parametrize("metric,words", [("fid", "--fid-stats FILE: the reference statistics inception_FFHQ_512"),
                                          ("bogus", "unknown metric")])
def test_unavailable_metrics_are_refused(folders, capsys, metric, words):
    r, g = folders
    assert main(["--restored", str(r), "--gt", str(g), "--metrics", f"psnr,{metric}", "--quiet"]) == 2
    assert words in capsys.readouterr().err


def test_missing_network_weights_are_named(folders, capsys):
    r, g = folders
    assert main(["--restored", str(r), "--gt", str(g), "--metrics", "lpips,deg,lmd", "--no-download", "--quiet"]) == 2
    err = capsys.readouterr().err
    for name in ("vgg16-397923af.pth", "lpips_v0.1_vgg.pth", "arcface_resnet18.pth", "alignment_WFLW_4HG.pth",
                 "https://download.pytorch.org/models/vgg16-397923af.pth"):
        assert name in err
    stats = r.parent / "stats.npz"
    np.savez(stats, mu=np.zeros(2048), sigma=np.eye(2048))
    assert main(["--restored", str(r), "--metrics", "fid", "--fid-stats", str(stats), "--no-download", "--quiet"]) == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in capsys.readouterr().err


def test_deg_and_lpips_through_the_command(arcface_ckpt, tmp_path):
    # Small images: the VGG16 and ResNet-18 forwards run on one CPU thread.
    r, g = tmp_path / "restored", tmp_path / "gt"
    r.mkdir(), g.mkdir()
    gt = synthetic_gt(48, 56)
    for folder, name, img in ((g, "a", gt), (r, "a", synthetic_restored(gt)), (g, "b", gt), (r, "b", gt)):
        cv2.imwrite(str(folder / f"{name}.png"), img)
    torch.manual_seed(0)
    ref = LPIPS()
    torch.save({f"features.{k}": v for k, v in ref.features.state_dict().items()}, tmp_path / "vgg16.pth")
    torch.save({k: v.abs() for k, v in ref.state_dict().items() if k.startswith("lin")}, tmp_path / "vgg.pth")
    out = tmp_path / "d.json"
    assert main(["--restored", str(r), "--gt", str(g), "--metrics", "deg,lpips", "--quiet", "--json", str(out),
                 "--arcface", str(arcface_ckpt), "--lpips-vgg16", str(tmp_path / "vgg16.pth"),
                 "--lpips-lin", str(tmp_path / "vgg.pth")]) == 0
    data = json.loads(out.read_text())
    # b is the GT itself: under 1°, left out of the mean, counted.
    assert data["per_image"]["b"]["deg"] < 1 and data["deg_identical_pairs"] == 1
    assert data["metrics"]["deg"] == pytest.approx(data["per_image"]["a"]["deg"])
    assert data["per_image"]["a"]["lpips"] > 0 and data["per_image"]["b"]["lpips"] == 0


def test_cli_module_is_a_subcommand():
    import argparse

    from facerestore.cli import COMMANDS
    from facerestore.cli import evaluate as module

    assert COMMANDS["evaluate"] == "facerestore.cli.evaluate"
    sub = argparse.ArgumentParser().add_subparsers()
    module.add_parser(sub)
    args = sub.choices["evaluate"].parse_args(["--restored", "x"])
    assert args.func is module.run and args.metrics == "psnr,ssim,niqe"


def test_psnr_with_correction_identical_is_finite_but_huge():
    # The authors' colour matching rounds in float32, so an identical pair is not exactly inf.
    gt = synthetic_gt(40, 40).astype(np.float32) / 255
    assert psnr(gt * 255, match_mean_std(gt, gt) * 255) > 100


# ---------------------------------------------------------------- FID

def test_fid_inception_layout():
    from facerestore.archs.inception import FIDInceptionV3, _avg_pool_tf

    net = FIDInceptionV3().eval()
    sd = net.state_dict()
    # torchvision's Inception3 has 27,161,264 parameters; without AuxLogits (3,326,696) and with
    # 1008 instead of 1000 classes (+8 x 2049) that is the FID network's 23,850,960.
    assert sum(v.numel() for k, v in net.named_parameters()) == 23_850_960
    shapes = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Conv2d_4a_3x3.bn.running_var": (192,),
              "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
              "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
              "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
              "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
              "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1), "fc.weight": (1008, 2048)}
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert net.Conv2d_1a_3x3.bn.eps == 1e-3
    # The FID patches: average pools leave the padding out; only the last block max-pools.
    assert torch.equal(_avg_pool_tf(torch.ones(1, 1, 4, 4)), torch.ones(1, 1, 4, 4))
    assert net.Mixed_7c.max_pool and not net.Mixed_7b.max_pool


def test_fid_through_the_command(tmp_path, monkeypatch):
    from facerestore.archs.inception import FIDInceptionV3
    from facerestore.metrics.fid import fid_from_features, inception_input, load_fid_inception

    monkeypatch.setenv("FACERESTORE_OFFLINE", "1")
    torch.manual_seed(0)
    ref = FIDInceptionV3().eval()
    # The release layout: no num_batches_tracked counters (an older torch), fc kept.
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "pt_inception.pth")
    # BasicSR's statistics file: numpy arrays pickled in the legacy format, under numpy 1's names.
    rs = np.random.RandomState(0)
    mean, a = rs.rand(2048) * 0.1, rs.randn(2048, 8) * 0.05
    stats = tmp_path / "inception_FFHQ_512.pth"
    torch.save(dict(name="FFHQ", size=512, mean=mean, cov=a @ a.T), stats, _use_new_zipfile_serialization=False)
    stats.write_bytes(stats.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    r = tmp_path / "restored"
    r.mkdir()
    imgs = [synthetic_gt(40, 40), synthetic_restored(synthetic_gt(40, 40)), synthetic_gt(40, 40)[::-1]]
    for i, img in enumerate(imgs):
        cv2.imwrite(str(r / f"{i}.png"), np.ascontiguousarray(img))
    out = tmp_path / "fid.json"
    assert main(["--restored", str(r), "--metrics", "fid", "--fid-stats", str(stats), "--quiet", "--json", str(out),
                 "--fid-inception", str(tmp_path / "pt_inception.pth")]) == 0
    data = json.loads(out.read_text())
    net = load_fid_inception(tmp_path / "pt_inception.pth")
    with torch.no_grad():
        feats = np.stack([net(inception_input(img.astype(np.float32)))[0].double().numpy() for img in imgs])
    assert feats.shape == (3, 2048) and feats.min() >= 0
    assert data["counts"]["fid"] == 3
    # fid_from_features equals the plain Fréchet distance (tests/test_metrics.py), which at d = 2048
    # takes half a minute on this CPU.
    assert data["metrics"]["fid"] == pytest.approx(fid_from_features(feats, mean, a @ a.T), rel=1e-6)
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="FID Inception layout"):
        load_fid_inception(tmp_path / "bad.pth")


# ---------------------------------------------------------------- LMD

def test_awing_fan_layout():
    from facerestore.archs.awing import AWingFAN

    sd = AWingFAN().state_dict()
    assert len(sd) == 1137  # facexlib FAN(num_modules=4, num_landmarks=98): every tensor, buffers included
    shapes = {"conv1.conv.weight": (64, 6, 7, 7),            # RGB + row, column, radius
              "m0.coordconv.conv.weight": (256, 259, 1, 1),  # first hourglass: no boundary channels
              "m1.coordconv.conv.weight": (256, 261, 1, 1),  # later ones: + 2 boundary-masked coordinates
              "conv2.downsample.2.weight": (128, 64, 1, 1), "m3.b2_plus_1.conv3.weight": (64, 64, 3, 3),
              "m2.b3_4.bn1.running_mean": (256,), "l3.weight": (99, 256, 1, 1), "al2.weight": (256, 99, 1, 1)}
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert "bl3.weight" not in sd and "al3.weight" not in sd


def test_heatmap_decoding_rule():
    from facerestore.metrics.landmarks import decode_heatmaps, landmark_distance

    heat = np.zeros((1, 2, 64, 64))
    heat[0, 0, 20, 10] = 5          # peak at x=10, y=20
    heat[0, 0, 20, 11] = 2          # right neighbour larger than left: +0.25 in x
    heat[0, 0, 19, 10] = 1          # upper neighbour larger than lower: -0.25 in y
    heat[0, 1, 30, 40] = 5          # a lone peak: neighbours equal, no shift
    pts = decode_heatmaps(heat)[0]
    assert pts.tolist() == [[10.75, 20.25], [40.5, 30.5]]
    # facexlib's quirk, kept: once one peak lies in the last row, every landmark reads its lower
    # neighbour from the last pixel (here 0), so landmark 0 still moves up although its real lower
    # neighbour (3) is now larger than its upper one (1).
    heat[0, 1, 63, 5] = 9
    heat[0, 0, 21, 10] = 3
    assert decode_heatmaps(heat)[0][0].tolist() == [10.75, 20.25]
    assert landmark_distance([[0, 0], [1, 1]], [[3, 4], [1, 1]]) == 2.5


def test_lmd_through_the_command(tmp_path, monkeypatch):
    from facerestore.archs.awing import AWingFAN
    from facerestore.metrics.landmarks import LandmarkDetector

    monkeypatch.setenv("FACERESTORE_OFFLINE", "1")
    torch.manual_seed(0)
    path = tmp_path / "alignment_WFLW_4HG.pth"
    torch.save({"state_dict": AWingFAN().state_dict()}, path)  # the release wraps it so
    r, g = tmp_path / "restored", tmp_path / "gt"
    r.mkdir(), g.mkdir()
    face = synthetic_gt(80, 72)
    cv2.imwrite(str(g / "a.png"), face)
    cv2.imwrite(str(r / "a.png"), face)
    out = tmp_path / "lmd.json"
    assert main(["--restored", str(r), "--gt", str(g), "--metrics", "lmd", "--lmd-model", str(path), "--quiet",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["per_image"]["a"]["lmd"] == 0.0 and data["counts"]["lmd"] == 1
    pts = LandmarkDetector(path).get_landmarks(face)
    assert pts.shape == (98, 2) and (pts[:, 0] <= 72 + 1).all() and (pts[:, 1] <= 80 + 1).all()
    torch.save({"state_dict": {"conv1.conv.weight": torch.zeros(1)}}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="AWing FAN"):
        LandmarkDetector(tmp_path / "bad.pth")
