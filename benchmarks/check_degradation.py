"""Our training-data degradation against the official FFHQDegradationDataset on the same random draws.

    /tmp/refenv/bin/python benchmarks/check_degradation.py [--faces ../shared/data/aligned] [--samples 6]

Runs the official ``gfpgan.data.ffhq_degradation_dataset.FFHQDegradationDataset`` (through the
reference kit's importer) and ours on the same 512 px faces, seeding python ``random``, numpy and
torch identically before each sample, and prints the largest differences of lq, gt and the
component boxes, for the official probabilities and for settings that force every branch (colour
jitter, torch colour jitter, grey with gt_gray).

Shims needed to run the official file here, and what they mean for the comparison:
- torchvision is not installed: its ``adjust_brightness/contrast/saturation/hue`` and
  ``rgb_to_grayscale`` are served by facerestore's implementations, so the torch colour-jitter
  *arithmetic* is not compared (the draw order, probabilities and factor ranges are);
- OpenCV 5 refuses the float JPEG quality the official code passes; the official call is given
  ``int(quality)`` (what OpenCV 4 did);
- torch >= 2.6 loads the landmark file with weights_only: numpy scalars are allow-listed for it;
- the official dataset swaps the stored eye boxes in place on every flip; it gets a fresh copy of
  the landmarks before each sample.
"""
import argparse
import copy
import os
import random
import sys
import tempfile

import cv2
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
KIT = os.environ.get("REFERENCE_KIT", os.path.join(HERE, "..", "..", "shared", "reference"))
sys.path.insert(0, KIT)
sys.path.insert(0, os.path.join(HERE, "..", "src"))


class _Cv2IntQuality:
    """cv2 with imencode taking the official float JPEG quality as int (OpenCV 4 behaviour)."""

    def __getattr__(self, name):
        return getattr(cv2, name)

    @staticmethod
    def imencode(ext, img, params=()):
        return cv2.imencode(ext, img, [int(p) for p in params])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", default=os.path.join(HERE, "..", "..", "shared", "data", "aligned"))
    ap.add_argument("--samples", type=int, default=6)
    args = ap.parse_args()

    import official
    official.import_all()
    from facerestore.train import degradations as ours_deg
    from facerestore.train.dataset import (
        TEMPLATE_COMPONENTS_512,
        FFHQDataConfig,
        FFHQDegradationDataset,
        save_component_file,
    )
    tvf = sys.modules["torchvision.transforms.functional"]
    for n in ("rgb_to_grayscale", "adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue"):
        setattr(tvf, n, getattr(ours_deg, n))
    import basicsr.data.degradations as basicsr_degradations
    basicsr_degradations.cv2 = _Cv2IntQuality()
    from gfpgan.data.ffhq_degradation_dataset import FFHQDegradationDataset as Official

    with tempfile.TemporaryDirectory() as tmp:
        faces = os.path.join(tmp, "faces")
        os.makedirs(faces)
        for f in sorted(os.listdir(args.faces)):
            img = cv2.imread(os.path.join(args.faces, f))
            cv2.imwrite(os.path.join(faces, os.path.splitext(f)[0] + ".png"), cv2.resize(img, (512, 512)))
        n_faces = len(os.listdir(faces))
        boxes = {f"{i:08d}": {k: list(v) for k, v in TEMPLATE_COMPONENTS_512.items()} for i in range(n_faces)}
        boxes["00000001"]["left_eye"] = [180.0, 236.0, 22.0]  # not symmetric, so a wrong flip shows
        lm = os.path.join(tmp, "lm.pth")
        save_component_file(boxes, lm)
        base = dict(dataroot_gt=faces, io_backend={"type": "disk"}, use_hflip=True, mean=[0.5] * 3, std=[0.5] * 3,
                    out_size=512, blur_kernel_size=41, kernel_list=["iso", "aniso"], kernel_prob=[0.5, 0.5],
                    blur_sigma=[0.1, 10], downsample_range=[0.8, 8], noise_range=[0, 20], jpeg_range=[60, 100],
                    color_jitter_prob=0.3, color_jitter_shift=20, color_jitter_pt_prob=0.3, gray_prob=0.01,
                    crop_components=True, component_path=lm, eye_enlarge_ratio=1.4)
        cases = {"train_gfpgan_v1.yml": {},
                 "every colour branch": dict(color_jitter_prob=1.0, color_jitter_pt_prob=1.0),
                 "grey + gt_gray": dict(gray_prob=1.0, gt_gray=True, color_jitter_prob=None, color_jitter_pt_prob=None)}
        worst = 0.0
        print(f"{'case':22s} {'sample':>6s} {'seed':>5s} {'lq max|d|':>10s} {'gt max|d|':>10s} {'boxes max|d|':>12s}")
        for case, over in cases.items():
            opt = dict(base, **over)
            # the official torch.load of the landmarks fails on torch >= 2.6 (weights_only) without this
            with torch.serialization.safe_globals([np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType]):
                off = Official(copy.deepcopy(opt))
            ours = FFHQDegradationDataset(FFHQDataConfig(**copy.deepcopy(opt)))
            pristine = copy.deepcopy(off.components_list)
            for s in range(args.samples):
                i = s % n_faces
                path = off.paths[i]
                j = ours.paths.index(path) if path in ours.paths else [os.path.basename(p) for p in ours.paths].index(
                    os.path.basename(path))
                off.components_list = copy.deepcopy(pristine)
                key = f"{i:08d}"
                ours.components = {f"{j:08d}": pristine[key]}  # the same boxes under our index
                outs = []
                for make, index in ((off.__getitem__, i), (ours.make_sample, j)):
                    random.seed(s)
                    np.random.seed(s)
                    torch.manual_seed(s)
                    outs.append(make(index))
                a, b = outs
                d_lq = (a["lq"] - b["lq"]).abs().max().item()
                d_gt = (a["gt"] - b["gt"]).abs().max().item()
                d_box = max((a[k] - b[k]).abs().max().item() for k in ("loc_left_eye", "loc_right_eye", "loc_mouth"))
                worst = max(worst, d_lq, d_gt, d_box)
                print(f"{case:22s} {i:6d} {s:5d} {d_lq:10.2e} {d_gt:10.2e} {d_box:12.2e}")
        print(f"max abs difference over all samples: {worst:.2e}")
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
