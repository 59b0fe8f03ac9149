"""Safe checkpoint reading, unwrapping and architecture dispatch."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from facerestore.models import loading
from facerestore.models.arch_detect import ArchRule


class _Tiny(nn.Module):
    def __init__(self, channels: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3)


def _tiny_rule() -> ArchRule:
    def detect(sd):
        if set(sd) == {"conv.weight", "conv.bias"}:
            return {"channels": sd["conv.weight"].shape[0]}
        return None
    return ArchRule("Tiny", _Tiny, detect)


@pytest.fixture
def tiny_rules(monkeypatch):
    monkeypatch.setattr(loading, "_rules", lambda: [_tiny_rule()])


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Evil()
    evil.marker = marker
    path = tmp_path / "GFPGANv1.4.pth"
    torch.save({"params_ema": {"w": torch.zeros(1)}, "payload": evil}, path)
    with pytest.raises(loading.CheckpointError, match="refused"):
        loading.read_checkpoint(path)
    with pytest.raises(loading.CheckpointError, match="refused"):
        loading.load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("wrapper", ["params_ema", "params", None])
def test_wrappers_and_module_prefix_are_undone(tmp_path, tiny_rules, wrapper):
    model = _Tiny(6)
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    ckpt = {wrapper: sd} if wrapper else sd
    path = tmp_path / "renamed_anything.pth"
    torch.save(ckpt, path)
    loaded = loading.load_model(path)
    assert isinstance(loaded, _Tiny) and not loaded.training
    assert torch.equal(loaded.conv.weight, model.conv.weight)


def test_params_ema_is_preferred_over_params():
    ema, raw = _Tiny().state_dict(), _Tiny().state_dict()
    sd = loading.canonicalize({"params": raw, "params_ema": ema})
    assert torch.equal(sd["conv.weight"], ema["conv.weight"])


def test_safetensors_files_load(tmp_path, tiny_rules):
    model = _Tiny(5)
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path))
    assert torch.equal(loading.load_model(path).conv.bias, model.conv.bias)


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", b"PK\x03\x04broken zip"])
def test_unreadable_files_give_a_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(loading.CheckpointError, match="bad.pth"):
        loading.read_checkpoint(path)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(content)
    with pytest.raises(loading.CheckpointError, match="bad.safetensors"):
        loading.read_checkpoint(bad_st)


def test_unknown_architecture_says_what_was_found(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(3), "decoder.weight": torch.zeros(2)}, path)
    with pytest.raises(loading.CheckpointError) as info:
        loading.load_model(path)
    message = str(info.value)
    assert "mystery.pth" in message and "unknown architecture" in message
    assert "encoder" in message and "2 tensors" in message


def test_unknown_name_lists_known_models(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(loading.CheckpointError, match="v1.4"):
        loading.load_model("no-such-model")


def test_every_rule_has_a_unique_name():
    names = [rule.name for rule in loading._rules()]
    assert len(names) == len(set(names))


def test_zoo_names_resolve_through_the_cache(tmp_path, monkeypatch):
    from facerestore.archs.retinaface import RetinaFace
    from facerestore.face.detectors import load_detector
    from facerestore.face.mtcnn import MTCNNDetector
    from facerestore.face.retinaface import RetinaFaceDetector
    from facerestore.models import zoo

    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    monkeypatch.chdir(tmp_path)
    # Before the file is there: "auto" falls back to the built-in detector, a named one explains.
    assert isinstance(load_detector("auto"), MTCNNDetector)
    with pytest.raises(Exception, match="detection_mobilenet0.25_Final.pth"):
        load_detector("retinaface-mobilenet0.25")
    net = RetinaFace(network_name="mobile0.25")
    torch.save(net.state_dict(), tmp_path / "detection_mobilenet0.25_Final.pth")  # bare, as released
    loaded = loading.load_model("retinaface-mobilenet0.25")
    assert isinstance(loaded, RetinaFace)
    assert isinstance(load_detector("retinaface-mobilenet0.25"), RetinaFaceDetector)


def test_models_verify_flags_a_corrupted_cached_file(tmp_path, monkeypatch, capsys):
    import hashlib

    from facerestore import cli
    from facerestore.models import zoo

    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RestoreFormer.pth").write_bytes(b"good bytes")
    (tmp_path / "RestoreFormer.pth.sha256").write_text(hashlib.sha256(b"good bytes").hexdigest())
    assert cli.main(["models", "--verify"]) == 0
    assert "ok" in capsys.readouterr().out
    (tmp_path / "RestoreFormer.pth").write_bytes(b"bad bytes!")
    assert cli.main(["models", "--verify"]) == 1
    assert "BAD" in capsys.readouterr().out


def test_a_wrong_file_under_a_zoo_name_is_refused(tmp_path, monkeypatch):
    from facerestore.archs.parsenet import ParseNet
    from facerestore.models import zoo

    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")
    monkeypatch.chdir(tmp_path)
    # RestoreFormer has no published size or hash, so any file of that name is picked up.
    torch.save(ParseNet(in_size=64, out_size=64).state_dict(), tmp_path / "RestoreFormer.pth")
    with pytest.raises(loading.CheckpointError, match="holds ParseNet, but 'RestoreFormer' is RestoreFormer"):
        loading.load_model("RestoreFormer")
