"""CodeFormer, RestoreFormer++ and GPEN give the official outputs, and their files are recognised.

The fixtures (tests/fixtures/official_families/, README there) hold what the official networks
returned for weights made by tests/_seeded_weights.py; here the same weights are put in each
release's layout, loaded the way users load files (architecture detected from the weights,
strict), and called as the official inference calls them. Tolerance: max abs diff 1e-4.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import facerestore
from facerestore.archs.codeformer import CodeFormer
from facerestore.archs.gpen import FullGenerator
from facerestore.archs.restoreformer import RestoreFormer
from facerestore.archs.restoreformerpp import RestoreFormerPlusPlus
from facerestore.models import describe
from facerestore.models.loading import CheckpointError, build_from_state_dict, canonicalize, detect_architecture

from _seeded_weights import seeded_input, seeded_weights

FIXTURES = Path(__file__).parent / "fixtures" / "official_families"
TOLERANCE = 1e-4
# training-only children of RestoreFormer++'s Lightning module, as the release carries them
RFPP_TRAINING = {"loss.discriminator.main.0.weight": (64, 3, 4, 4),
                 "loss.perceptual_loss.net.slice1.0.weight": (64, 3, 3, 3)}


def _fixture(name: str) -> dict:
    return torch.load(FIXTURES / f"{name}.pt", weights_only=True)


def release_layout(name: str, sd: dict[str, torch.Tensor]) -> dict:
    """The weights as the official release stores them."""
    if name == "codeformer":
        return {"params_ema": sd}
    if name == "restoreformerpp":
        state = {f"vqvae.{k}": v for k, v in sd.items()}
        state.update({k: torch.randn(shape) for k, shape in RFPP_TRAINING.items()})
        return {"epoch": 3, "global_step": 1000, "state_dict": state}
    return dict(sd)


def official_calls(name: str, model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        if name == "codeformer":  # inference_codeformer.py: net(x, w=w, adain=True)[0]
            return {f"w={w}": model(x, w=w, adain=True)[0] for w in (0.0, 0.5, 1.0)}
        return {"image": model(x)[0]}


def _check_outputs(name: str, fixture: dict, model: torch.nn.Module) -> None:
    x = seeded_input(tuple(fixture["input"]["shape"]), fixture["input"]["seed"])
    outs = official_calls(name, model, x)
    assert outs.keys() == fixture["out"].keys()
    s = fixture["stride"]
    for setting, got in outs.items():
        diff = (got[..., ::s, ::s] - fixture["out"][setting]).abs().max().item()
        assert diff <= TOLERANCE, f"{name} {setting}: max abs diff {diff:.3g} on the grid"
        # the whole image, not only the grid: sums agree to the tolerance per element
        n = got.numel()
        assert abs(got.double().sum().item() - fixture["sum"][setting]) <= TOLERANCE * n / 10
        assert abs(got.double().abs().sum().item() - fixture["abs_sum"][setting]) <= TOLERANCE * n / 10


EXPECTED_CLASS = {"codeformer": CodeFormer, "restoreformerpp": RestoreFormerPlusPlus,
                  "gpen512": FullGenerator, "gpen256": FullGenerator}


@pytest.mark.parametrize("name", ["restoreformerpp", "gpen512", "gpen256"])
def test_release_file_loads_and_gives_official_output(name: str, tmp_path: Path) -> None:
    fixture = _fixture(name)
    path = tmp_path / {"restoreformerpp": "RestoreFormer++.ckpt", "gpen512": "GPEN-BFR-512.pth",
                       "gpen256": "GPEN-BFR-256.pth"}[name]
    torch.save(release_layout(name, seeded_weights(fixture["spec"], fixture["weight_seed"])), path)
    model = facerestore.load_model(path)
    assert type(model) is EXPECTED_CLASS[name]
    _check_outputs(name, fixture, model)


def test_codeformer_gives_official_output_at_three_fidelity_weights() -> None:
    # In memory (the same read path as a file after torch.load): the VQGAN is 300 MB.
    fixture = _fixture("codeformer")
    sd = seeded_weights(fixture["spec"], fixture["weight_seed"])
    model = build_from_state_dict(canonicalize(release_layout("codeformer", sd)))
    assert type(model) is CodeFormer
    assert describe(model).takes_fidelity
    _check_outputs("codeformer", fixture, model)


def test_gpen_size_is_read_from_the_weights() -> None:
    for name, size in (("gpen512", 512), ("gpen256", 256)):
        fixture = _fixture(name)
        sd = seeded_weights(fixture["spec"], 0)
        rule, kwargs = detect_architecture(sd)
        hp = fixture["hyperparameters"]
        assert rule.name == "FullGenerator"
        assert (kwargs["size"], kwargs["channel_multiplier"], kwargs["narrow"], kwargs["style_dim"]) == (
            size, hp["channel_multiplier"], hp["narrow"], hp["style_dim"])


# ----------------------------------------------------------------------------- detection round trips
ROUND_TRIPS = [
    (FullGenerator, dict(size=1024, style_dim=32, n_mlp=2, channel_multiplier=2, narrow=0.0625)),
    (FullGenerator, dict(size=2048, style_dim=32, n_mlp=1, channel_multiplier=2, narrow=0.0625)),
    (FullGenerator, dict(size=256, style_dim=16, n_mlp=3, channel_multiplier=1, narrow=0.0625)),
    (FullGenerator, dict(size=64, style_dim=16, n_mlp=2, channel_multiplier=2, narrow=0.0625)),
    (RestoreFormerPlusPlus, dict(n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                 attn_resolutions=(256,), z_channels=8)),
    (RestoreFormerPlusPlus, dict(n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 1, 2), num_res_blocks=2,
                                 attn_resolutions=(128,), z_channels=8, ex_multi_scale_num=1)),
    (RestoreFormer, dict(n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                         attn_resolutions=(256,), z_channels=8)),
]


@pytest.mark.parametrize(("cls", "kwargs"), ROUND_TRIPS, ids=lambda v: getattr(v, "__name__", ""))
def test_detection_round_trip(cls: type, kwargs: dict, tmp_path: Path) -> None:
    """build -> save in the release layout -> load -> same class and hyperparameters."""
    torch.manual_seed(0)
    net = cls(**kwargs)
    name = {FullGenerator: "gpen", RestoreFormerPlusPlus: "restoreformerpp", RestoreFormer: "rf"}[cls]
    path = tmp_path / ("RestoreFormer++.ckpt" if name == "restoreformerpp" else "model.pth")
    layout = release_layout(name, net.state_dict()) if name != "rf" else {"params_ema": net.state_dict()}
    torch.save(layout, path)
    loaded = facerestore.load_model(path)
    assert type(loaded) is cls
    rule, found = detect_architecture(canonicalize(torch.load(path, weights_only=True)))
    for key, value in kwargs.items():
        want = tuple(value) if isinstance(value, (list, tuple)) else value
        got = tuple(found[key]) if isinstance(found[key], (list, tuple)) else found[key]
        assert got == pytest.approx(want), key
    if kwargs.get("size", 0) > 256:
        return  # large GPENs: detection and strict loading are the point; the forward is tested above
    x = torch.rand(1, 3, kwargs.get("size", 32), kwargs.get("size", 32)) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x)[0], net.eval()(x)[0], rtol=0, atol=1e-5)


def test_codeformer_round_trip_on_meta() -> None:
    """CodeFormer's transformer sizes come back from its weights (shapes only: the VQGAN is 300 MB)."""
    kwargs = dict(dim_embd=64, n_head=8, n_layers=3, codebook_size=128, latent_size=256, connect_list=["64", "128"])
    with torch.device("meta"):
        sd = CodeFormer(**kwargs).state_dict()
    rule, found = detect_architecture(sd)
    assert rule.module_class is CodeFormer and found == kwargs


def test_rfpp_checkpoint_with_unknown_entries_is_refused(tmp_path: Path) -> None:
    net = RestoreFormerPlusPlus(**ROUND_TRIPS[4][1])
    layout = release_layout("restoreformerpp", net.state_dict())
    layout["state_dict"]["ema.decoder.conv_out.weight"] = torch.zeros(1)
    path = tmp_path / "RestoreFormer++.ckpt"
    torch.save(layout, path)
    with pytest.raises(CheckpointError, match="ema."):
        facerestore.load_model(path)


def test_rfpp_training_entries_are_dropped_by_name_only() -> None:
    net = RestoreFormerPlusPlus(**ROUND_TRIPS[4][1])
    state = canonicalize(release_layout("restoreformerpp", net.state_dict()))
    assert state.keys() == net.state_dict().keys()  # 'vqvae.' stripped, 'loss.' gone


def test_checkpoint_with_python_objects_is_refused_then_converted_once(tmp_path: Path) -> None:
    import argparse

    from facerestore.cli import main

    net = RestoreFormerPlusPlus(**ROUND_TRIPS[4][1])
    layout = release_layout("restoreformerpp", net.state_dict())
    layout["hyper_parameters"] = argparse.Namespace(lr=1e-4)  # a Python object: weights_only refuses it
    path = tmp_path / "RestoreFormer++.ckpt"
    torch.save(layout, path)
    with pytest.raises(CheckpointError, match="facerestore convert --unpickle"):
        facerestore.load_model(path)
    out = tmp_path / "RestoreFormer++.safetensors"
    assert main(["convert", "--unpickle", str(path), str(out)]) == 0
    loaded = facerestore.load_model(out)
    assert type(loaded) is RestoreFormerPlusPlus
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x)[0], net.eval()(x)[0], rtol=0, atol=1e-6)
