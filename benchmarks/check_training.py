"""One training iteration of facerestore's GFPGANTrainer against the official GFPGANModel.

    /tmp/refenv/bin/python ../shared/reference/official_train_step.py OUT --size 64     # the official step
    /tmp/refenv/bin/python benchmarks/official_step_no_r1.py OUT_NO_R1 --size 64       # same without R1
    python benchmarks/check_training.py OUT [OUT_NO_R1 ...]

Loads ``OUT/init.pt`` (options, every network's initial weights, the batch, the RNG state) into our
trainer, runs ``train_step(batch, current_iter=1)`` from the same RNG state, and prints every loss
term side by side with ``OUT/after.pt``, the StyleGAN noise drawn, and the largest relative
differences of the updated weights of each network (max |ours - official| / max |official| over each
tensor) and of their updates (the same on ``after - init``). Goal: <= 1e-5.
Also checks our degradation functions against BasicSR's on the same random draws when the
reference kit is importable (``--degradation``, run with the kit's python).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from facerestore.train.config import config_from_dict
from facerestore.train.step import GFPGANTrainer


def build_trainer(init: dict) -> GFPGANTrainer:
    opt = copy.deepcopy(init["opt"])
    for k in list(opt["path"]):
        if k.startswith("pretrain_"):
            opt["path"][k] = None
    opt["random_init"] = ["decoder", "identity", "vgg19"]
    opt["datasets"].pop("val", None)
    cfg = config_from_dict(opt, "init.pt")
    trainer = GFPGANTrainer(cfg, "cpu", load_pretrained=False)
    nets = init["nets"]
    trainer.net_g.load_state_dict(nets["network_g"])
    trainer.net_g_ema.load_state_dict(nets["network_g"])  # official: pretrain file's params_ema = same weights
    trainer.net_d.load_state_dict(nets["network_d"])
    for part in ("left_eye", "right_eye", "mouth"):
        trainer.net_d_comp[part].load_state_dict(nets[f"network_d_{part}"])
    trainer.net_identity.load_state_dict(nets["network_identity"])
    trainer.vgg.vgg.load_torchvision(nets["vgg19"])
    return trainer


def record_noise(net: torch.nn.Module, sink: list) -> None:
    """Our StyleConv draws its noise with torch.randn right after the modulated conv: replay it."""
    def hook(mod, inp, out):
        g = torch.Generator().set_state(torch.get_rng_state())
        sink.append(torch.randn(out.shape[0], 1, *out.shape[2:], generator=g))
    for m in net.modules():
        if type(m).__name__ == "StyleConv":
            m.modulated_conv.register_forward_hook(hook)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    scale = b.abs().max().item()
    diff = (a - b).abs().max().item()
    return diff / scale if scale > 0 else diff


def float64_step(init: dict, noises: list) -> dict:
    """The same step in float64 with the same noise maps: a reference free of float32 rounding, to
    tell float32 noise (official and ours alike) from a real difference."""
    trainer = build_trainer(init)
    for net in [*trainer.networks().values(), trainer.net_identity, trainer.vgg]:
        net.double()
    dec = trainer.net_g.stylegan_decoder
    for i, n in enumerate(noises):
        setattr(dec.noises, f"noise{i}", n.double())
    forward = trainer.net_g.forward
    trainer.net_g.forward = lambda x, **kw: forward(x, **{**kw, "randomize_noise": False})
    batch = {k: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v)
             for k, v in init["batch"].items()}
    trainer.update_learning_rate(1)
    trainer.train_step(batch, current_iter=1)
    return {name: {k: v.detach().clone() for k, v in net.state_dict().items()}
            for name, net in trainer.networks().items()}


def compare_to_float64(init: dict, after: dict, ours: dict) -> None:
    ref = float64_step(init, after["noises"])
    print(f"{'network':18s} {'official vs f64':>16s} {'ours vs f64':>12s}   elements > 1e-5 of scale (official / ours)")
    for name, sd_off in after["nets"].items():
        w_off = w_ours = 0.0
        n_off = n_ours = 0
        for k, v in sd_off.items():
            if not v.is_floating_point():
                continue
            r = ref[name][k]
            scale = r.abs().max().clamp(min=1e-30)
            d_off, d_ours = (v.double() - r).abs(), (ours[name][k].double() - r).abs()
            w_off, w_ours = max(w_off, (d_off.max() / scale).item()), max(w_ours, (d_ours.max() / scale).item())
            n_off += int((d_off > 1e-5 * scale).sum())
            n_ours += int((d_ours > 1e-5 * scale).sum())
        print(f"{name:18s} {w_off:16.2e} {w_ours:12.2e}   {n_off} / {n_ours}")


def check(out_dir: Path, with_float64: bool = False) -> float:
    init = torch.load(out_dir / "init.pt", weights_only=True)
    after = torch.load(out_dir / "after.pt", weights_only=True)
    torch.use_deterministic_algorithms(True)
    trainer = build_trainer(init)
    noises: list = []
    record_noise(trainer.net_g, noises)
    batch = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in init["batch"].items()}
    torch.set_rng_state(init["rng_state"])
    t0 = time.time()
    trainer.update_learning_rate(1)
    ours = trainer.train_step(batch, current_iter=1)
    dt = time.time() - t0
    theirs = after["log_dict"]
    size = init["opt"]["network_g"]["out_size"]
    reg = init["opt"]["train"]["net_d_reg_every"]
    print(f"\n== {out_dir}  size {size}  batch {batch['lq'].shape[0]}  net_d_reg_every {reg} "
          f"(R1 {'on' if 1 % reg == 0 else 'off'})  ours {dt:.1f}s, official {after.get('seconds', 0):.1f}s")
    print(f"{'term':22s} {'official':>16s} {'facerestore':>16s} {'rel diff':>10s}")
    worst = 0.0
    for k in sorted(set(theirs) | set(ours), key=lambda k: list(theirs).index(k) if k in theirs else 99):
        a, b = ours.get(k), theirs.get(k)
        if a is None or b is None:
            print(f"{k:22s} {b!s:>16s} {a!s:>16s}   MISSING")
            worst = float("inf")
            continue
        r = abs(a - b) / max(abs(b), 1e-30)
        worst = max(worst, r)
        print(f"{k:22s} {b:16.9g} {a:16.9g} {r:10.2e}")
    print(f"max relative difference of the losses: {worst:.2e}")
    if noises and after.get("noises"):
        nd = max((x - y).abs().max().item() for x, y in zip(noises, after["noises"], strict=True))
        print(f"StyleGAN noise: {len(noises)} maps (official {len(after['noises'])}), max abs diff {nd:.1e}")
    ours_nets = trainer.networks()
    init_key = {"net_g": "network_g", "net_g_ema": "network_g", "net_d": "network_d",
                "net_d_left_eye": "network_d_left_eye", "net_d_right_eye": "network_d_right_eye",
                "net_d_mouth": "network_d_mouth"}
    print(f"{'network':18s} {'weights rel':>12s} {'updates rel':>12s} {'elements off':>13s} {'of which |g|~eps':>16s}"
          f" {'elements':>9s} {'rel, others':>11s}  (worst tensor)")
    worst_w = 0.0
    lr = float(init["opt"]["train"]["optim_g"]["lr"])
    for name, sd_off in after["nets"].items():
        sd_ours = ours_nets[name].state_dict()
        sd_init = init["nets"][init_key[name]]
        w_rel, u_rel, where, n_off, n_eps, n_all, rest = 0.0, 0.0, "", 0, 0, 0, 0.0
        for k, v in sd_off.items():
            if not v.is_floating_point():
                continue
            wr = rel(sd_ours[k], v)
            # Adam's first step moves each weight by lr * g / (|g| + eps): +-lr unless |g| is near eps=1e-8,
            # where float32 rounding of g decides the size of the step. Count those elements apart.
            off = (sd_ours[k].double() - v.double()).abs() > 1e-5 * v.double().abs().max().clamp(min=1e-30)
            step = (v.double() - sd_init[k].double()).abs()
            n_off += int(off.sum())
            near_eps = step < 0.99 * lr if name != "net_g_ema" else torch.zeros_like(off)
            n_eps += int((off & near_eps).sum())
            n_all += v.numel()
            others = ~near_eps
            if others.any():  # the same relative measure over the elements with a well-defined Adam step
                d = (sd_ours[k].double() - v.double()).abs()[others].max().item()
                rest = max(rest, d / max(v.double().abs().max().item(), 1e-30))
            upd_off = v.double() - sd_init[k].double()
            if upd_off.abs().max() > 0:
                ur = rel(sd_ours[k].double() - sd_init[k].double(), upd_off)
                if ur > u_rel:
                    u_rel, where = ur, k
            w_rel = max(w_rel, wr)
        worst_w = max(worst_w, w_rel)
        print(f"{name:18s} {w_rel:12.2e} {u_rel:12.2e} {n_off:13d} {n_eps:16d} {n_all:9d} {rest:11.2e}  {where}")
    print(f"max relative difference of the updated weights: {worst_w:.2e}")
    if with_float64:
        compare_to_float64(init, after, {k: n.state_dict() for k, n in ours_nets.items()})
    return max(worst, worst_w)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dirs", nargs="+", type=Path, help="folders written by official_train_step.py")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--float64", action="store_true",
                    help="also run the step in float64 (same noise) and measure official and ours against it")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = {d: check(d, args.float64) for d in args.out_dirs}
    print("\nsummary: " + ", ".join(f"{d}: {v:.2e}" for d, v in results.items()))
    return 0 if all(v <= 1e-5 for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
