"""Write tests/fixtures/official_families/: what the OFFICIAL CodeFormer, RestoreFormer++ and GPEN
networks return for seeded weights and inputs, small enough to commit.

    /tmp/refenv/bin/python scripts/make_family_fixtures.py      # ~1 min; needs the kit's mirrors

The official architecture files are read from the git mirrors' HEAD and run unchanged, through the
reference kit's ``families.py`` loader (``source`` / ``module_from``: CodeFormer's logger and
registry imports are stood in for, GPEN's ops run their own CPU code). Each network is built with
reduced sizes where its constructor allows (the layout of the releases otherwise), and loaded with
weights from ``tests/_seeded_weights.py``: the fixture stores only that recipe's inputs (names,
shapes, init statistics), the input seed, a 64x64 grid of each output and its full sums, so a file
is ~100-200 KB. facerestore is not imported here.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "official_families"
KIT = ROOT.parent / "shared" / "reference"  # the reference kit (../shared/reference from the project root)
if not KIT.is_dir():
    KIT = Path("/work/shared/reference")
sys.path[:0] = [str(KIT), str(ROOT / "tests")]

import families  # noqa: E402  (the reference kit)
from _seeded_weights import seeded_input, seeded_weights, spec_of  # noqa: E402

WEIGHT_SEED, INPUT_SEED = 0, 1

# Reduced where the official constructor allows. CodeFormer's VQGAN (channels, six levels, 512 px)
# is fixed inside the official class, so only its transformer and codebook shrink.
CASES = {
    "codeformer": dict(dim_embd=64, n_head=8, n_layers=2, codebook_size=64, connect_list=["32", "64", "128", "256"]),
    "restoreformerpp": dict(n_embed=64, embed_dim=32, ch=32, out_ch=3, ch_mult=[1, 2, 2, 4], num_res_blocks=1,
                            attn_resolutions=[16], dropout=0.0, in_channels=3, resolution=128, z_channels=32,
                            double_z=False, enable_mid=True, head_size=4, ex_multi_scale_num=1),
    "gpen512": dict(size=512, style_dim=64, n_mlp=8, channel_multiplier=2, narrow=0.0625, device="cpu"),
    "gpen256": dict(size=256, style_dim=64, n_mlp=8, channel_multiplier=1, narrow=0.0625, device="cpu"),
}
REPOS = {"codeformer": "sczhou/CodeFormer", "restoreformerpp": "wzhouxiff/RestoreFormerPlusPlus",
         "gpen512": "yangxy/GPEN", "gpen256": "yangxy/GPEN"}


def official_class(name: str):
    if name == "codeformer":
        # stand-ins for CodeFormer's two imports of its bundled basicsr, as families.codeformer does
        import logging
        import types
        for mod in ("basicsr", "basicsr.utils", "basicsr.utils.registry", "basicsr.archs"):
            sys.modules.setdefault(mod, types.ModuleType(mod))
        sys.modules["basicsr.utils"].get_root_logger = lambda *a, **k: logging.getLogger("basicsr")

        class Registry:
            def register(self, obj=None):
                return obj if obj is not None else (lambda o: o)
        sys.modules["basicsr.utils.registry"].ARCH_REGISTRY = Registry()
        repo = "sczhou/CodeFormer"
        families.module_from("basicsr.archs.vqgan_arch", families.source(repo, "basicsr/archs/vqgan_arch.py"),
                             "vqgan_arch.py")
        return families.module_from("basicsr.archs.codeformer_arch",
                                    families.source(repo, "basicsr/archs/codeformer_arch.py"),
                                    "codeformer_arch.py").CodeFormer
    if name == "restoreformerpp":
        return families.module_from("rfpp_vqvae_arch", families.source(
            "wzhouxiff/RestoreFormerPlusPlus", "RestoreFormer/modules/vqvae/vqvae_arch.py"),
            "vqvae_arch.py").VQVAEGANMultiHeadTransformer
    tmp = families.SRC / "gpen"
    (tmp / "op").mkdir(parents=True, exist_ok=True)
    for f in ("op/__init__.py", "op/fused_act.py", "op/upfirdn2d.py", "gpen_model.py"):
        (tmp / f).write_text(families.source("yangxy/GPEN", f"face_model/{f}"))
    if str(tmp) not in sys.path:
        sys.path.insert(0, str(tmp))
    import gpen_model
    return gpen_model.FullGenerator


def calls(name: str, net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        if name == "codeformer":  # inference_codeformer.py
            return {f"w={w}": net(x, w=w, adain=True)[0] for w in (0.0, 0.5, 1.0)}
        return {"image": net(x)[0]}


def code_margin(name: str, net, x: torch.Tensor) -> float:
    """CodeFormer picks codes by argmax: the smallest top-1 / top-2 softmax gap, so that a fixture
    whose codes a rounding could flip is noticed when it is made."""
    if name != "codeformer":
        return float("nan")
    with torch.no_grad():
        logits = net(x, code_only=True)[0]
        top2 = torch.topk(torch.softmax(logits, dim=2), 2, dim=2)[0]
    return (top2[..., 0] - top2[..., 1]).min().item()


def main() -> int:
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, hp in CASES.items():
        cls = official_class(name)
        torch.manual_seed(WEIGHT_SEED)
        net = cls(**hp).eval()
        spec = spec_of(net.state_dict())
        net.load_state_dict(seeded_weights(spec, WEIGHT_SEED), strict=True)
        size = 512 if name == "codeformer" else hp["resolution"] if name == "restoreformerpp" else hp["size"]
        x = seeded_input((1, 3, size, size), INPUT_SEED)
        outs = calls(name, net, x)
        stride = size // 64
        mirror = families.mirrors() / REPOS[name].replace("/", "+") / "repo"
        commit = subprocess.run(["git", "-C", str(mirror), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        margin = code_margin(name, net, x)
        record = {
            "official": {"repository": REPOS[name], "commit": commit, "class": cls.__name__},
            "hyperparameters": {k: v for k, v in hp.items() if k != "device"},
            "weight_seed": WEIGHT_SEED, "spec": spec,
            "input": {"shape": (1, 3, size, size), "seed": INPUT_SEED},
            "stride": stride,
            "out": {k: v[..., ::stride, ::stride].contiguous() for k, v in outs.items()},
            "sum": {k: v.double().sum().item() for k, v in outs.items()},
            "abs_sum": {k: v.double().abs().sum().item() for k, v in outs.items()},
            "code_margin": margin,
        }
        path = OUT / f"{name}.pt"
        torch.save(record, path)
        print(f"{path.name}: {path.stat().st_size / 1024:.0f} KB, {len(spec)} tensors, outputs {list(outs)}, "
              f"min code margin {margin:.3g}, {cls.__name__} @ {commit[:10]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
