"""Compare facerestore's AWing FAN and landmark decoding with facexlib's (reference kit, seeded
random weights saved in the alignment_WFLW_4HG.pth layout):

    /tmp/refenv/bin/python benchmarks/check_landmarks.py

Needs ../shared/reference (setup.sh done) and the project importable in that venv
(``/tmp/refenv/bin/pip install -e .``) or on PYTHONPATH=src. Prints the largest heatmap and
landmark differences on the faces of ../shared/data/aligned and a resized copy.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / ".." / "shared" / "reference"))
import official  # noqa: E402

official.setup()
np.float = float  # facexlib's calculate_points uses np.float, removed in numpy 1.24
import cv2  # noqa: E402
from facexlib.alignment.awing_arch import FAN, calculate_points  # noqa: E402

from facerestore.metrics.landmarks import LandmarkDetector, decode_heatmaps, landmark_distance  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    theirs = FAN(num_modules=4, num_landmarks=98, device="cpu").eval()
    with torch.no_grad():  # perturb the BN statistics so they matter
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alignment_WFLW_4HG.pth"
        torch.save({"state_dict": theirs.state_dict()}, path)  # the release wraps it so
        ours = LandmarkDetector(path)
    # Random weights put the maxima on the border (where facexlib's decoding fails); a fixed
    # Gaussian bump per landmark, added to both networks' last heatmaps, moves them inside.
    rs0 = np.random.RandomState(1)
    yy, xx = np.mgrid[0:64, 0:64]
    bumps = np.stack([50 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0)
                      for cx, cy in rs0.uniform(8, 56, size=(99, 2))])
    bump = torch.from_numpy(bumps).float()[None]
    for net in (theirs, ours.net):
        net.l3.register_forward_hook(lambda module, args, out: out + bump)
    worst_heat = worst_pts = 0.0
    faces = sorted((ROOT / ".." / "shared" / "data" / "aligned").glob("*.png"))
    for p in faces:
        img = cv2.imread(str(p))
        for im in (img, cv2.resize(img, (300, 340))):
            with torch.no_grad():
                small = cv2.resize(im, (256, 256))
                x = torch.from_numpy(np.ascontiguousarray(small[..., ::-1].transpose(2, 0, 1))).float().div(255)[None]
                ref_heat = theirs(x)[0][-1][:, :-1].numpy()
            heat = ours.heatmaps(im)
            worst_heat = max(worst_heat, float(np.abs(heat - ref_heat).max()))
            try:
                ref_pts = theirs.get_landmarks(im)
            except IndexError:  # facexlib reads past the end for a maximum on the last pixel
                print(f"{p.name} {im.shape[1]}x{im.shape[0]}: official get_landmarks fails (IndexError); "
                      f"heatmap diff {np.abs(heat - ref_heat).max():.3g}")
                continue
            pts = ours.get_landmarks(im)
            worst_pts = max(worst_pts, float(np.abs(pts - ref_pts).max()))
            print(f"{p.name} {im.shape[1]}x{im.shape[0]}: LMD ours-vs-official {landmark_distance(pts, ref_pts):.6f}")
    # Random weights put most maxima on the border; decode heatmaps with interior maxima too.
    rs = np.random.RandomState(0)
    decode_worst = 0.0
    for trial in range(200):
        heat = rs.rand(2, 98, 64, 64)
        if trial % 2:  # maxima in the first / last rows: facexlib's batch-wide neighbour quirk
            heat[0, 5, 63, 10] = 2.0
            heat[1, 7, 0, 20] = 2.0
        heat[..., 63, 63] = np.minimum(heat[..., 63, 63], 0.5)  # keep facexlib away from its IndexError
        decode_worst = max(decode_worst, float(np.abs(decode_heatmaps(heat) - calculate_points(heat)).max()))
    print(f"max |heatmap diff| {worst_heat:.3g}, max |landmark diff| {worst_pts:.3g} px, "
          f"decode diff on 200 random heatmap batches {decode_worst:.3g}")


if __name__ == "__main__":
    main()
