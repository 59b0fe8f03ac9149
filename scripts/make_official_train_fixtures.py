"""Write tests/fixtures/official_train/: one official GFPGAN training step at 64 px, kept small.

The reference kit's ``official_train_step.py`` runs one iteration of the *official* ``GFPGANModel``
and writes ``init.pt`` (every network's initial weights, the batch, the RNG state, the options)
and ``after.pt`` (``log_dict``, the updated networks, the StyleGAN noise drawn): about 1.1 GB at
64 px. This script turns them into a fixture of a few tens of KB that
``tests/test_train_official_step.py`` checks our step against, without the kit:

- the initial weights are not stored but *re-made*: the kit builds each network with its default
  init under ``torch.manual_seed(seed + i)`` and then adds ``0.02 * N(0, 1)`` (its ``perturb``). The
  fixture records that recipe (seeds, and for the generator the order in which the official
  constructor draws its ``torch.randn`` tensors, which differs from our constructor's) and the
  sha256 of every initial tensor, so the test proves it re-made exactly the official weights;
- the batch as uint8 (checked here to give the kit's float tensors bit for bit) and the boxes;
- every loss term of ``log_dict``; the noise maps' sums;
- the updated weights as digests: per tensor, the float64 sum of the update (after - init) and of
  its absolute value, plus a few small tensors in full.

Run (the kit's python; the official code comes through the kit, facerestore is not imported)::

    /tmp/refenv/bin/python ../shared/reference/official_train_step.py /tmp/official_train64 --size 64
    /tmp/refenv/bin/python scripts/make_official_train_fixtures.py /tmp/official_train64
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_KIT = ROOT.parent / "shared" / "reference"
OUT = ROOT / "tests" / "fixtures" / "official_train"
# the kit's order of networks: network i is built under manual_seed(seed + i) and perturbed with seed + i
NET_ORDER = ["network_g", "network_d", "network_d_left_eye", "network_d_right_eye", "network_d_mouth",
             "network_identity", "vgg19"]
# small updated tensors kept in full (a digest cannot show which element moved)
FULL = {"net_g": ["toRGB.0.bias", "toRGB.3.weight", "stylegan_decoder.to_rgb1.bias", "conv_body_first.1.bias",
                  "stylegan_decoder.style_convs.7.modulated_conv.modulation.bias"],
        "net_g_ema": ["toRGB.3.weight"],
        "net_d": ["final_linear.1.weight", "final_linear.1.bias", "conv_body.0.1.bias"],
        "net_d_left_eye": ["final_conv.0.weight"],
        "net_d_mouth": ["final_conv.0.weight", "final_conv.0.bias"]}


def sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().numpy().tobytes()).hexdigest()


def generator_draw_order(opt: dict) -> list[list]:
    """[key, divisor] for every tensor the official generator constructor fills with torch.randn, in
    draw order (EqualLinear divides its draw by lr_mul in place)."""
    calls: list[torch.Tensor] = []
    randn = torch.randn

    def recording(*a, **k):
        t = randn(*a, **k)
        calls.append(t)
        return t

    build = importlib.import_module("basicsr.archs").build_network
    torch.randn = recording
    try:
        net = build(dict(opt["network_g"]))
    finally:
        torch.randn = randn
    where = {t.data_ptr(): k for k, t in net.state_dict(keep_vars=True).items()}
    order = []
    for t in calls:
        key = where.get(t.data_ptr())
        if key is None:
            raise SystemExit("the official generator drew a tensor that is not in its state dict")
        order.append(key)
    lr_mul = {}
    for name, mod in net.named_modules():
        if type(mod).__name__ == "EqualLinear":
            lr_mul[f"{name}.weight"] = float(mod.lr_mul)
    return [[k, lr_mul.get(k, 1.0)] for k in order]


def replay_generator_init(order: list[list], template: dict, seed: int) -> dict:
    torch.manual_seed(seed)
    out = {k: v.clone() for k, v in template.items()}
    for key, div in order:
        out[key] = torch.randn(template[key].shape) / div if div != 1.0 else torch.randn(template[key].shape)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path, help="OUT_DIR of the kit's official_train_step.py")
    ap.add_argument("--kit", type=Path, default=DEFAULT_KIT)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    sys.path.insert(0, str(args.kit))
    step = importlib.import_module("official_train_step")
    official = importlib.import_module("official")
    step.install_standins()

    init = torch.load(args.run_dir / "init.pt", weights_only=True)
    after = torch.load(args.run_dir / "after.pt", weights_only=True)
    opt, nets, batch = init["opt"], init["nets"], init["batch"]
    seed = int(opt["manual_seed"])

    # 1. the generator's draw order, proved by replaying it onto a default-built official net + perturb
    order = generator_draw_order(opt)
    build = importlib.import_module("basicsr.archs").build_network
    torch.manual_seed(seed)
    net = build(dict(opt["network_g"]))
    replayed = replay_generator_init(order, net.state_dict(), seed)
    net.load_state_dict(replayed)
    official.perturb(net, seed)
    bad = [k for k, v in net.state_dict().items() if not torch.equal(v, nets["network_g"][k])]
    if bad:
        raise SystemExit(f"replaying the generator's draws does not give init.pt: {bad[:5]}")

    # 2. the batch: uint8 that gives the kit's tensors bit for bit through (u8 / 255 - 0.5) / 0.5
    u8 = {}
    for key in ("lq", "gt"):
        x = batch[key]
        q = torch.round((x * 0.5 + 0.5) * 255).clamp(0, 255).to(torch.uint8)
        back = (torch.from_numpy(q.numpy().astype(np.float32) / np.float32(255.0)) - 0.5) / 0.5
        if not torch.equal(back, x):
            raise SystemExit(f"batch {key}: not 8-bit values ({(back - x).abs().max():.3g})")
        u8[key] = q
    rng = torch.get_rng_state()
    torch.manual_seed(seed)
    if not torch.equal(torch.get_rng_state(), init["rng_state"]):
        raise SystemExit("init.pt's rng_state is not torch.manual_seed(seed)")
    torch.set_rng_state(rng)

    # 3. digests of the updated networks
    init_of = {"net_g": "network_g", "net_g_ema": "network_g", "net_d": "network_d",
               "net_d_left_eye": "network_d_left_eye", "net_d_right_eye": "network_d_right_eye",
               "net_d_mouth": "network_d_mouth"}
    updates: dict = {}
    full: dict = {}
    for name, sd in after["nets"].items():
        updates[name] = {}
        for k, v in sd.items():
            if not v.is_floating_point():
                continue
            d = v.double() - nets[init_of[name]][k].double()
            updates[name][k] = [float(d.sum()), float(d.abs().sum()), int((d != 0).sum())]
        for k in FULL.get(name, []):
            full[f"{name}/{k}"] = sd[k].clone()

    manifest = {
        "format": "facerestore-official-train/1",
        "made_by": "scripts/make_official_train_fixtures.py from the kit's official_train_step.py --size 64",
        "sources": {p.name: (p / ".reference-commit").read_text().strip()
                    for p in sorted(Path(official.SRC).iterdir()) if (p / ".reference-commit").is_file()},
        "torch": torch.__version__,
        "seed": seed,
        "perturb_scale": 0.02,
        "net_order": NET_ORDER,
        "generator_draw_order": order,
        "opt": opt,
        "init_sha256": {name: {k: sha(v) for k, v in sd.items()} for name, sd in nets.items()},
        "gt_path": [Path(p).name for p in batch["gt_path"]],
        "log_dict": {k: float(v) for k, v in after["log_dict"].items()},
        "noise_sums": [[list(n.shape), float(n.double().sum())] for n in after["noises"]],
        "updates": updates,
        "official_seconds": float(after.get("seconds", 0)),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    tensors = {"lq_u8": u8["lq"], "gt_u8": u8["gt"], **{k: batch[k].clone() for k in batch if k.startswith("loc_")},
               "full": full}
    torch.save(tensors, args.out / "batch_and_tensors.pt")
    for p in sorted(args.out.iterdir()):
        print(f"{p.name:28s} {p.stat().st_size:9d} bytes  sha256 {hashlib.sha256(p.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
