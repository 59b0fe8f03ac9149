"""Cross-check facerestore's LPIPS-VGG against the lpips package's own code (no network, no
torchvision): the package's LPIPS class runs on a stand-in ``torchvision.models.vgg16`` whose
``features`` hold the same (random) VGG16 weights, with the released v0.1 linear layers.

    pip download lpips==0.1.4 --no-deps -d /tmp/lpips_whl
    (cd /tmp/lpips_whl && python -m zipfile -e lpips-0.1.4-py3-none-any.whl x)
    python benchmarks/check_lpips.py /tmp/lpips_whl/x

Prints both distances for a few image pairs and their largest relative difference.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch

from facerestore.metrics.lpips import LPIPS, to_lpips_input


def main(unpacked: str) -> None:
    torch.manual_seed(0)
    ours = LPIPS().eval()
    lin_file = Path(unpacked) / "lpips" / "weights" / "v0.1" / "vgg.pth"
    lins = torch.load(lin_file, map_location="cpu", weights_only=True)
    ours.load_state_dict({**ours.state_dict(), **lins})

    # A stand-in torchvision exposing only what lpips.pretrained_networks touches.
    tv = types.ModuleType("torchvision")
    tv.models = types.ModuleType("torchvision.models")
    tv.models.vgg16 = lambda pretrained=False, **kw: types.SimpleNamespace(features=ours.features)
    for name in ("alexnet", "squeezenet1_1", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        setattr(tv.models, name, None)
    sys.modules["torchvision"], sys.modules["torchvision.models"] = tv, tv.models
    # lpips/__init__ also imports its trainer, which wants scipy.ndimage.zoom (unused here).
    if "scipy" not in sys.modules:
        try:
            import scipy.ndimage  # noqa: F401
        except ImportError:
            scipy = types.ModuleType("scipy")
            scipy.ndimage = types.ModuleType("scipy.ndimage")
            scipy.ndimage.zoom = None
            sys.modules["scipy"], sys.modules["scipy.ndimage"] = scipy, scipy.ndimage
    sys.path.insert(0, unpacked)
    import lpips  # noqa: E402

    theirs = lpips.LPIPS(net="vgg", verbose=False, model_path=str(lin_file)).eval()
    rs = np.random.RandomState(0)
    worst = 0.0
    for h, w in ((64, 64), (96, 80), (128, 128)):
        a = rs.randint(0, 256, (h, w, 3)).astype(np.uint8)
        b = np.clip(a.astype(int) + rs.randint(-40, 41, a.shape), 0, 255).astype(np.uint8)
        x0, x1 = to_lpips_input(a), to_lpips_input(b)
        with torch.no_grad():
            d_ours, d_theirs = float(ours(x0, x1)[0]), float(theirs(x0, x1).flatten()[0])
        worst = max(worst, abs(d_ours - d_theirs) / abs(d_theirs))
        print(f"{h}x{w}: facerestore {d_ours:.9f}  lpips {d_theirs:.9f}")
    print(f"max relative difference {worst:.2e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/lpips_whl/x")
