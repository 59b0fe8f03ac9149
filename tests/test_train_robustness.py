"""What a new user hits first: misspelled or bad option values, damaged states, Ctrl-C/SIGTERM, a
broken image in the dataset, a half-set torchrun environment (issue 14, findings 4-6 and 10)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

from facerestore.cli import main as cli_main  # noqa: E402
from facerestore.train.config import ConfigError, TrainSetupError, config_from_dict  # noqa: E402
from facerestore.train.distributed import setup_distributed  # noqa: E402
from facerestore.train.loop import run_training  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_train_trainer import REPO, tiny_opt  # noqa: E402

QUIET = lambda *a, **k: None  # noqa: E731


@pytest.mark.parametrize("where, key, known", [
    (("train", "scheduler"), "milestone", "milestones"),
    (("train", "scheduler"), "gama", "gamma"),
    (("train", "optim_g"), "lrr", "lr"),
    (("train", "perceptual_opt"), "style_weigth", "style_weight"),
    (("train", "gan_component_opt"), "loss_wieght", "loss_weight"),
    (("datasets", "train", "io_backend"), "typ", "type"),
    (("logger",), "print_frq", "print_freq"),
    (("path",), "pretrain_network", "pretrain_network_g"),
    (("network_g",), "narow", "narrow"),
    (("network_d",), "chanel_multiplier", "channel_multiplier"),
])
def test_misspelled_keys_at_every_level_are_named_with_the_known_ones(tmp_path, where, key, known):
    opt = tiny_opt(tmp_path)
    block = opt
    for w in where:
        block = block[w]
    block[key] = block.pop(known, 1)
    with pytest.raises(ConfigError) as e:
        config_from_dict(opt, "opt.yml")
    msg = str(e.value)
    assert ".".join(where) in msg and repr(key) in msg and repr(known) in msg, msg


@pytest.mark.parametrize("where, value", [
    (("train", "optim_g", "lr"), "fast"),
    (("train", "optim_d", "lr"), -0.1),
    (("datasets", "train", "batch_size_per_gpu"), 0),
    (("train", "total_iter"), 0),
    (("train", "scheduler", "gamma"), "half"),
    (("train", "scheduler", "milestones"), [10, "x"]),
    (("train", "perceptual_opt", "layer_weights"), {"conv9_9": 1}),
    (("train", "gan_opt", "gan_type"), "wgan_softmax"),
    (("logger", "save_checkpoint_freq"), 0),
])
def test_bad_values_are_named(tmp_path, where, value):
    opt = tiny_opt(tmp_path)
    block = opt
    for w in where[:-1]:
        block = block[w]
    block[where[-1]] = value
    with pytest.raises(ConfigError) as e:
        config_from_dict(opt, "opt.yml")
    assert ".".join(where[:-1] if where[-1] == "layer_weights" else where) in str(e.value), str(e.value)


def test_yaml_number_strings_are_still_read(tmp_path):
    opt = tiny_opt(tmp_path)
    opt["train"]["optim_g"]["lr"] = "2e-3"  # YAML 1.1 reads 2e-3 without !!float as a string
    cfg = config_from_dict(opt)
    assert cfg.train.optim_g.lr == pytest.approx(2e-3) and cfg.train.pixel_opt.loss_weight == pytest.approx(0.1)


def _two_states(tmp_path: Path) -> dict:
    opt = tiny_opt(tmp_path, cheap=True)
    opt["logger"].update(print_freq=100, save_checkpoint_freq=1, use_tb_logger=False)
    opt["train"]["total_iter"] = 3
    run_training(config_from_dict(opt), max_iters=2, print_fn=QUIET)
    states = tmp_path / "exp" / "training_states"
    assert sorted(p.name for p in states.iterdir()) == ["1.state", "2.state"]
    (states / "2.state").write_bytes(b"\x00junk" * 10)  # a state cut by a full disk or a kill
    return opt


def test_auto_resume_skips_a_damaged_state_with_a_note(tmp_path):
    opt = _two_states(tmp_path)
    lines = []
    out = run_training(config_from_dict(opt), auto_resume=True, print_fn=lambda s, **k: lines.append(s))
    damaged = str(tmp_path / "exp" / "training_states" / "2.state")
    assert any("skipping a damaged training state" in s and damaged in s for s in lines), lines
    assert any("resumed from" in s and s.rstrip().endswith("iteration 1") for s in lines), lines
    assert out["iter"] == 3


def test_a_damaged_state_without_auto_resume_names_the_file(tmp_path, capsys):
    opt = _two_states(tmp_path)
    damaged = tmp_path / "exp" / "training_states" / "2.state"
    opt["path"]["resume_state"] = str(damaged)
    with pytest.raises(TrainSetupError, match="2.state: damaged"):
        run_training(config_from_dict(opt), print_fn=QUIET)
    cfg = tmp_path / "opt.yml"
    cfg.write_text(yaml.safe_dump(opt))
    assert cli_main(["train", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(damaged) in err and "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_a_training_state_before_exiting(tmp_path, sig):
    opt = tiny_opt(tmp_path, cheap=True)
    opt["logger"].update(print_freq=1, save_checkpoint_freq=10_000, use_tb_logger=False)
    opt["train"]["total_iter"] = 10_000
    cfg = tmp_path / "opt.yml"
    cfg.write_text(yaml.safe_dump(opt))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"), PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    proc = subprocess.Popen([sys.executable, "-m", "facerestore", "train", "-c", str(cfg)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # wait for the first iteration
            line = proc.stdout.readline()
            if not line or line.startswith("[epoch"):
                break
        assert line.startswith("[epoch"), proc.stderr.read()[-2000:] if proc.poll() is not None else line
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    states = list((tmp_path / "exp" / "training_states").glob("*.state"))
    assert len(states) == 1 and "continue with --auto-resume" in err
    assert int(states[0].stem) >= 1 and f"at iteration {states[0].stem}" in err


def test_check_data_finds_a_broken_image(tmp_path, capsys):
    opt = tiny_opt(tmp_path, cheap=True)
    cfg = tmp_path / "opt.yml"
    cfg.write_text(yaml.safe_dump(opt))
    assert cli_main(["train", "-c", str(cfg), "--check-data"]) == 0
    assert "checked 4 training images: all readable" in capsys.readouterr().out
    broken = tmp_path / "faces" / "00002.png"
    broken.write_bytes(broken.read_bytes()[:40] + b"\x00" * 20)
    (tmp_path / "faces" / "00003.png").write_bytes(b"")
    assert cli_main(["train", "-c", str(cfg), "--check-data"]) == 2
    captured = capsys.readouterr()
    assert str(broken) in captured.err and "00003.png" in captured.err and "2 broken" in captured.out


def test_rank_without_world_size_is_not_silent(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    notes = []
    info = setup_distributed("auto", note=notes.append)
    assert not info.enabled and notes and "RANK is set without WORLD_SIZE" in notes[0]
    with pytest.raises(TrainSetupError, match="RANK is set without WORLD_SIZE"):
        setup_distributed("pytorch")


def test_a_broken_image_met_during_training_names_it_and_keeps_the_last_iteration(tmp_path):
    opt = tiny_opt(tmp_path, cheap=True)
    opt["logger"].update(print_freq=100, save_checkpoint_freq=100, use_tb_logger=False)
    opt["train"]["total_iter"] = 10
    run_training(config_from_dict(opt), max_iters=2, print_fn=QUIET)
    broken = tmp_path / "faces" / "00001.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(TrainSetupError) as e:  # 4 faces, batch 2: the next epoch reads it
        run_training(config_from_dict(opt), auto_resume=True, max_iters=4, print_fn=QUIET)
    msg = str(e.value)
    assert str(broken) in msg and "--check-data" in msg, msg
    failed_at = int(msg.split("iteration ")[1].split(":")[0])
    newest = max(int(p.stem) for p in (tmp_path / "exp" / "training_states").glob("*.state"))
    assert newest == failed_at - 1  # the last finished iteration was saved
