"""One training step against the official GFPGANModel's (tests/fixtures/official_train/, see its README).

The official step's initial weights are re-made here from the recipe the fixture records (and
proved identical through their sha256), our trainer runs the same iteration on the same batch and
RNG state, and every loss term, the StyleGAN noise and the updated weights must agree: a change to
any loss term, its weight, or the order of the step fails here.
"""
import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facerestore.train.config import config_from_dict
from facerestore.train.networks import build_network
from facerestore.train.step import COMPONENTS, GFPGANTrainer

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "official_train"
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")

# Loss terms: the official float32 step and ours agree to 1.2e-6 (op order); a loss weight or term
# changed by even 1% is 1e4 times farther.
LOSS_RTOL = 1e-5
# Updated weights: Adam's first step moves each weight by lr * g / (|g| + eps), i.e. +-lr, except
# where |g| is near eps: there float32 rounding (op order) decides its size and sign, official and
# ours alike. So the per-tensor sums of the update may differ by a few such elements (2 lr each):
# measured at most 1.1e-5 of a tensor's elements (1 or 2 threads); allowed 4 + 5e-5 of them, for
# other CPUs' rounding. A changed loss or step order flips far more (dropping the identity weight:
# 2% of a tensor; the style loss's 0.5 set to 1: 0.36%), and the loss terms catch any change.
LR = 2e-3
EMA_SHARE = 1 - 0.5 ** (32 / 10000)  # the EMA generator moves by this share of net_g's update


def _allowed(name: str, numel: int, total_abs: float) -> float:
    flips = 2 * LR * (4 + 5e-5 * numel)
    return (EMA_SHARE * flips if name == "net_g_ema" else flips) + 1e-6 * total_abs


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()


def _perturb(net: nn.Module, seed: int, scale: float) -> None:
    """The kit's ``official.perturb``: + scale * N(0, 1) on every floating state tensor, in order."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for t in net.state_dict(keep_vars=True).values():
            if t.is_floating_point() and id(t) not in seen:
                seen.add(id(t))
                t.add_(scale * torch.randn(t.shape, generator=g, dtype=torch.float32))


def _torchvision_vgg19(seed: int) -> nn.Module:
    """torchvision's VGG19 ``features`` with its init order: each Conv2d's default init as it is
    made, then kaiming_normal_(fan_out) and zero bias over all of them."""
    torch.manual_seed(seed)
    layers, c = [], 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    vgg = nn.Module()
    vgg.features = nn.Sequential(*layers)
    for m in vgg.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
    return vgg


def official_init(manifest: dict, trainer: GFPGANTrainer) -> dict[str, dict[str, torch.Tensor]]:
    """Every network's initial weights of the official step, re-made from the fixture's recipe."""
    opt, seed, scale = manifest["opt"], manifest["seed"], manifest["perturb_scale"]
    init = {}
    for i, key in enumerate(manifest["net_order"]):
        if key == "vgg19":
            net = _torchvision_vgg19(seed + i)
        elif key == "network_g":
            # the official constructor draws its tensors in another order than ours: replay it
            net = trainer.net_g
            torch.manual_seed(seed + i)
            sd = net.state_dict()
            with torch.no_grad():
                for name, div in manifest["generator_draw_order"]:
                    draw = torch.randn(sd[name].shape)
                    sd[name].copy_(draw / div if div != 1.0 else draw)
        else:
            torch.manual_seed(seed + i)
            net = build_network(opt[key])
        _perturb(net, seed + i, scale)
        init[key] = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return init


@pytest.fixture(scope="module")
def official_step():
    """Our step from the official initial state: (manifest, init, our log, our networks, noises)."""
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    data = torch.load(FIXTURE / "batch_and_tensors.pt", weights_only=True)
    opt = copy.deepcopy(manifest["opt"])
    for k in list(opt["path"]):
        if k.startswith("pretrain_"):
            opt["path"][k] = None
    opt["random_init"] = ["decoder", "identity", "vgg19"]
    opt["datasets"].pop("val", None)
    cfg = config_from_dict(opt, "official_train/manifest.json")
    with torch.random.fork_rng():
        trainer = GFPGANTrainer(cfg, "cpu", load_pretrained=False)
        init = official_init(manifest, trainer)
    wrong = [f"{net}/{k}" for net, sd in init.items() for k, v in sd.items()
             if _sha(v) != manifest["init_sha256"][net][k]]
    assert not wrong, f"the re-made initial weights differ from the official ones: {wrong[:5]}"
    trainer.net_g.load_state_dict(init["network_g"])
    trainer.net_g_ema.load_state_dict(init["network_g"])  # official: the pretrain file's params_ema
    trainer.net_d.load_state_dict(init["network_d"])
    for part in COMPONENTS:
        trainer.net_d_comp[part].load_state_dict(init[f"network_d_{part}"])
    trainer.net_identity.load_state_dict(init["network_identity"])
    trainer.vgg.vgg.load_torchvision(init["vgg19"])

    def to_float(u8: torch.Tensor) -> torch.Tensor:
        return (torch.from_numpy(u8.numpy().astype(np.float32) / np.float32(255.0)) - 0.5) / 0.5

    batch = {"lq": to_float(data["lq_u8"]), "gt": to_float(data["gt_u8"]),
             **{k: v for k, v in data.items() if k.startswith("loc_")}}
    noises: list[torch.Tensor] = []

    def record(mod, inp, out):  # our StyleConv draws its noise right after the modulated conv
        g = torch.Generator().set_state(torch.get_rng_state())
        noises.append(torch.randn(out.shape[0], 1, *out.shape[2:], generator=g))

    hooks = [m.modulated_conv.register_forward_hook(record) for m in trainer.net_g.modules()
             if type(m).__name__ == "StyleConv"]
    torch.manual_seed(manifest["seed"])
    trainer.update_learning_rate(1)
    with torch.random.fork_rng():
        torch.manual_seed(manifest["seed"])
        log = trainer.train_step(batch, current_iter=1)
    for h in hooks:
        h.remove()
    return manifest, init, log, trainer.networks(), noises, data["full"]


def test_every_loss_term_matches_the_official_step(official_step):
    manifest, _, log, _, _, _ = official_step
    official = manifest["log_dict"]
    assert list(log) == list(official)  # same terms, same order
    off = {k: (log[k], v) for k, v in official.items() if abs(log[k] - v) > LOSS_RTOL * abs(v)}
    assert not off, f"loss terms (ours, official) off by more than {LOSS_RTOL:g} relative: {off}"


def test_the_same_stylegan_noise_is_drawn(official_step):
    manifest, _, _, _, noises, _ = official_step
    assert [list(n.shape) for n in noises] == [s for s, _ in manifest["noise_sums"]]
    for n, (_, total) in zip(noises, manifest["noise_sums"], strict=True):
        assert float(n.double().sum()) == pytest.approx(total, rel=1e-9, abs=1e-9)


def test_updated_weights_match_the_official_step(official_step):
    manifest, init, _, nets, _, full = official_step
    init_of = {"net_g_ema": "network_g"}
    worst = {}
    for name, tensors in manifest["updates"].items():
        sd = nets[name].state_dict()
        start = init[init_of.get(name, name.replace("net_", "network_"))]
        for k, (total, total_abs, moved) in tensors.items():
            d = sd[k].double() - start[k].double()
            allowed = _allowed(name, d.numel(), total_abs)
            if abs(float(d.sum()) - total) > allowed or abs(float(d.abs().sum()) - total_abs) > allowed:
                worst[f"{name}/{k}"] = (float(d.sum()), total, float(d.abs().sum()), total_abs, allowed)
            assert abs(int((d != 0).sum()) - moved) <= 4 + 5e-5 * d.numel(), f"{name}/{k}: other elements moved"
    assert not worst, f"updates (sum, official, sum |.|, official, allowed) differ: {dict(list(worst.items())[:6])}"
    for key, official in full.items():
        name, k = key.split("/", 1)
        ours = nets[name].state_dict()[k]
        torch.testing.assert_close(ours, official, rtol=0, atol=2e-6, msg=lambda m, key=key: f"{key}: {m}")
