"""The trainer: option files, setup refusals, a tiny run with every loss, resume, torchrun, checkpoints."""
import copy
import re
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

yaml = pytest.importorskip("yaml")

from facerestore.cli import main as cli_main  # noqa: E402
from facerestore.train.config import ConfigError, config_from_dict, load_config  # noqa: E402
from facerestore.train.loop import run_training  # noqa: E402
from facerestore.train.step import GFPGANTrainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "train_tiny.yml"
ALL_TERMS = {"l_g_pix", "l_p_8", "l_p_16", "l_p_32", "l_p_64", "l_g_percep", "l_g_style", "l_g_gan",
             "l_g_gan_left_eye", "l_g_gan_right_eye", "l_g_gan_mouth", "l_g_comp_style_loss", "l_identity", "l_d",
             "real_score", "fake_score", "l_d_r1", "l_d_left_eye", "l_d_right_eye", "l_d_mouth"}


def make_faces(folder: Path, n: int = 4, size: int = 64, blur: float = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2 + blur)
        cv2.imwrite(str(folder / f"{i:05d}.png"), img)
    return folder


def tiny_opt(tmp_path: Path, cheap: bool = False) -> dict:
    """configs/train_tiny.yml on faces made here; ``cheap`` drops the two big frozen networks
    (ArcFace, VGG19) where a test is about the loop, not the losses."""
    with open(TINY) as f:
        opt = yaml.safe_load(f)
    opt["datasets"]["train"]["dataroot_gt"] = str(make_faces(tmp_path / "faces"))
    opt["path"]["experiments_root"] = str(tmp_path / "exp")
    if cheap:
        opt.pop("network_identity")
        opt["train"].pop("perceptual_opt")
        opt["train"]["net_d_reg_every"] = 2
    return opt


def test_tiny_config_trains_with_every_loss_and_restores_a_face(tmp_path):
    opt = tiny_opt(tmp_path)
    make_faces(tmp_path / "val_gt", n=1)
    make_faces(tmp_path / "val_lq", n=1, blur=2)
    opt["datasets"]["val"] = {"name": "v", "type": "PairedImageDataset", "dataroot_lq": str(tmp_path / "val_lq"),
                              "dataroot_gt": str(tmp_path / "val_gt")}
    opt["train"]["net_d_reg_every"] = 2
    opt["val"]["val_freq"] = 2
    opt["logger"].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    lines = []
    out = run_training(config_from_dict(opt), max_iters=2, print_fn=lambda s, **k: lines.append(s))
    assert out["iter"] == 2 and set(out["losses"]) == ALL_TERMS
    assert all(np.isfinite(v) for v in out["losses"].values())
    validation = [s for s in lines if "validation at iter 2: psnr" in s]
    assert validation and re.search(r"ssim (0|1)\.\d{4}$", validation[0])
    models = tmp_path / "exp" / "models"
    ckpt = torch.load(models / "net_g_2.pth", weights_only=True)
    assert set(ckpt) == {"params", "params_ema"}
    for name in ("net_d_2", "net_d_left_eye_2", "net_d_right_eye_2", "net_d_mouth_2", "net_g_latest"):
        assert (models / f"{name}.pth").is_file()
    state = torch.load(tmp_path / "exp" / "training_states" / "2.state", weights_only=True)
    assert state["iter"] == 2 and len(state["optimizers"]) == 5

    import facerestore
    net = facerestore.load_model(models / "net_g_latest.pth")
    assert type(net).__name__ == "GFPGANv1"
    face = cv2.imread(str(tmp_path / "faces" / "00000.png"))
    restorer = facerestore.Restorer(model=net, upscale=1, bg_upsampler=None, parser="none", detector="mtcnn")
    _, restored, _ = restorer.enhance(face, has_aligned=True, paste_back=False, weight=1.0)
    assert len(restored) == 1 and restored[0].dtype == np.uint8 and restored[0].shape[2] == 3


def test_resume_continues_with_the_same_numbers(tmp_path):
    opt = tiny_opt(tmp_path, cheap=True)
    opt["logger"].update(print_freq=100, save_checkpoint_freq=2, use_tb_logger=False)
    opt["train"]["total_iter"] = 4
    opt["train"]["scheduler"]["milestones"] = [3]
    quiet = lambda *a, **k: None  # noqa: E731
    whole = run_training(config_from_dict(opt), print_fn=quiet)
    opt2 = copy.deepcopy(opt)
    opt2["path"]["experiments_root"] = str(tmp_path / "exp2")
    first = run_training(config_from_dict(opt2), max_iters=2, print_fn=quiet)
    assert first["iter"] == 2
    resumed = run_training(config_from_dict(opt2), auto_resume=True, print_fn=quiet)
    assert resumed["iter"] == 4
    assert resumed["losses"] == whole["losses"]
    for name in ("net_g", "net_g_ema", "net_d", "net_d_mouth"):
        a, b = whole["trainer"].networks()[name].state_dict(), resumed["trainer"].networks()[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert resumed["trainer"].current_lr() == pytest.approx(1e-3)  # milestone 3 passed after the resume


def test_torchrun_two_processes_on_cpu(tmp_path):
    opt = tiny_opt(tmp_path, cheap=True)
    opt["logger"].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    cfg = tmp_path / "tiny.yml"
    cfg.write_text(yaml.safe_dump(opt))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "facerestore", "train", "-c", str(cfg), "--max-iters", "2"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout and proc.stdout.count("[epoch") == 2  # rank 0 logs only
    assert "nan" not in proc.stdout and proc.stdout.count("done: iteration 2") == 1
    assert "processes in sync: max weight difference 0" in proc.stdout  # gradients averaged, same steps
    assert (tmp_path / "exp" / "models" / "net_g_2.pth").is_file()


def test_official_options_are_read_and_missing_files_named(tmp_path, monkeypatch, capsys):
    """The official recipe's structure (train_gfpgan_v1.yml) offline: each missing file is named
    with where to put it, as one error without a traceback."""
    opt = tiny_opt(tmp_path)
    opt.pop("random_init")
    opt["datasets"]["train"].update(dataroot_gt="datasets/ffhq/ffhq_512", out_size=512, blur_kernel_size=41,
                                    component_path="experiments/pretrained_models/FFHQ_eye_mouth_landmarks_512.pth")
    opt["datasets"]["val"] = {"name": "validation", "type": "PairedImageDataset",
                              "dataroot_lq": "datasets/faces/validation/input",
                              "dataroot_gt": "datasets/faces/validation/reference", "io_backend": {"type": "disk"},
                              "mean": [0.5] * 3, "std": [0.5] * 3, "scale": 1}
    opt["network_g"].update(out_size=512, num_style_feat=512, num_mlp=8, narrow=1, fix_decoder=True,
                            decoder_load_path="experiments/pretrained_models/"
                                              "StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth")
    opt["path"]["pretrain_network_identity"] = "experiments/pretrained_models/arcface_resnet18.pth"
    opt["num_gpu"] = "auto"
    opt["logger"]["wandb"] = {"project": None, "resume_id": None}
    path = tmp_path / "train_gfpgan_v1.yml"
    path.write_text(yaml.safe_dump(opt))
    cfg = load_config(path)
    assert cfg.use_facial_disc and cfg.use_identity and cfg.train.comp_style_weight == 200
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACERESTORE_HOME", str(tmp_path / "cache"))
    assert cli_main(["train", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in ("datasets/ffhq/ffhq_512", "StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth", "arcface_resnet18.pth",
                   "FFHQ_eye_mouth_landmarks_512.pth", "vgg19-dcbb9e9d.pth", "validation/input"):
        assert needle in err, needle
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in err
    # a relative dataroot is read from the working folder, not the option file's: say which
    assert f"datasets/ffhq/ffhq_512 (relative to the current folder {tmp_path})" in err


def test_option_errors_name_the_key(tmp_path):
    opt = tiny_opt(tmp_path)
    opt["train"]["pixel_optt"] = {}
    with pytest.raises(ConfigError, match="pixel_optt"):
        config_from_dict(opt)
    opt = tiny_opt(tmp_path)
    opt["random_init"] = ["discriminator"]
    with pytest.raises(ConfigError, match="random_init"):
        config_from_dict(opt)


def test_official_optimizer_quirks_decoder_init_and_fine_tuning(tmp_path):
    opt = tiny_opt(tmp_path, cheap=True)
    opt["random_init"] = []
    cfg = config_from_dict(opt)
    t = GFPGANTrainer(cfg, load_pretrained=False)
    assert t.optimizer_g.param_groups[0]["betas"] == (0.0, 0.99)  # official (0**1, 0.99**1)
    d = t.optimizer_d.param_groups[0]
    # the official param group carries the unscaled lr; only the betas get the lazy-R1 ratio k/(k+1)
    assert d["lr"] == pytest.approx(2e-3) and d["betas"] == pytest.approx((0.0, 0.99 ** (2 / 3)))
    assert t.optimizer_comp["mouth"].param_groups[0]["betas"] == (0.9, 0.99)

    # decoder from a StyleGAN2 checkpoint ({'params_ema': decoder}), frozen with fix_decoder
    decoder = {k: torch.randn_like(v) for k, v in t.net_g.stylegan_decoder.state_dict().items()}
    torch.save({"params_ema": decoder}, tmp_path / "stylegan2.pth")
    opt["network_g"].update(decoder_load_path=str(tmp_path / "stylegan2.pth"), fix_decoder=True)
    t2 = GFPGANTrainer(config_from_dict(opt))
    assert all(torch.equal(v, decoder[k]) for k, v in t2.net_g.stylegan_decoder.state_dict().items())
    assert not any(p.requires_grad for p in t2.net_g.stylegan_decoder.parameters())

    # fine-tuning from a released-layout checkpoint: net_g <- params_ema (param_key_g), EMA <- params_ema
    ema = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in t.net_g.state_dict().items()}
    torch.save({"params": t.net_g.state_dict(), "params_ema": ema}, tmp_path / "release.pth")
    opt["network_g"].update(decoder_load_path=None)
    opt["path"]["pretrain_network_g"] = str(tmp_path / "release.pth")
    t3 = GFPGANTrainer(config_from_dict(opt))
    assert all(torch.equal(v, ema[k]) for k, v in t3.net_g.state_dict().items())
    assert all(torch.equal(v, ema[k]) for k, v in t3.net_g_ema.state_dict().items())


@pytest.mark.parametrize("arch", ["GFPGANv1Clean", "GFPGANBilinear"])
def test_other_generators_train(tmp_path, arch):
    """The v1.2 route trains GFPGANBilinear (then `facerestore convert`); v1.3/v1.4 are GFPGANv1Clean."""
    opt = tiny_opt(tmp_path, cheap=True)
    opt["network_g"]["type"] = arch
    opt["network_g"].pop("resample_kernel")
    if arch == "GFPGANv1Clean":
        opt["network_g"].pop("lr_mlp")
    t = GFPGANTrainer(config_from_dict(opt), load_pretrained=False)
    from facerestore.train.dataset import FFHQDegradationDataset
    data = torch.utils.data.default_collate([FFHQDegradationDataset(t.cfg.train_data)[(i, i)] for i in range(2)])
    before = copy.deepcopy(t.net_g.state_dict())
    losses = t.train_step(data, 2)
    assert "l_d_r1" in losses and all(np.isfinite(v) for v in losses.values())
    assert any(not torch.equal(before[k], v) for k, v in t.net_g.state_dict().items())
    assert type(t.net_g).__name__ == arch
