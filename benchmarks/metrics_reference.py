"""Compute the reference metric values pinned in tests/test_metrics.py with the official BasicSR
functions (run once with the reference kit's venv; needs ../shared/reference and /tmp/refsrc):

    /tmp/refenv/bin/python benchmarks/metrics_reference.py

Prints PSNR/SSIM (RGB and Y, crop 0 and 4, with and without the authors' mean/std correction),
NIQE, and the Fréchet distance of two fixed Gaussians, for the synthetic images of
tests/_metric_images.py and one face of ../shared/data/aligned with numpy noise.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / ".." / "shared" / "reference"))
import official  # noqa: E402  (makes basicsr importable without torchvision)

official.setup()
import cv2  # noqa: E402
from basicsr.metrics.niqe import calculate_niqe  # noqa: E402
from basicsr.metrics.psnr_ssim import calculate_psnr, calculate_ssim  # noqa: E402
from basicsr.utils.color_util import bgr2ycbcr  # noqa: E402
from scipy import linalg  # noqa: E402

from _metric_images import synthetic_gt, synthetic_restored  # noqa: E402


def authors_correct(gt: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """The --correct_mean_var step of TencentARC/VQFR metric_paper/calculate_psnr_ssim.py."""
    img_gt = gt.astype(np.float32) / 255.
    img = restored.astype(np.float32) / 255.
    mean_l = [np.mean(img_gt[:, :, j]) for j in range(3)]
    std_l = [np.std(img_gt[:, :, j]) for j in range(3)]
    for j in range(3):
        for _ in range(2):
            img[:, :, j] = img[:, :, j] - np.mean(img[:, :, j]) + mean_l[j]
            img[:, :, j] = img[:, :, j] / np.std(img[:, :, j]) * std_l[j]
    return img


def report(name: str, gt: np.ndarray, restored: np.ndarray) -> None:
    print(f"== {name} {gt.shape}")
    for crop in (0, 4):
        for y in (False, True):
            p = calculate_psnr(gt, restored, crop_border=crop, test_y_channel=y)
            s = calculate_ssim(gt, restored, crop_border=crop, test_y_channel=y)
            print(f"crop {crop} y {y}: psnr {p!r} ssim {s!r}")
    # The authors' script: float32 [0, 1], corrected, (Y via bgr2ycbcr), then *255 into BasicSR.
    corrected = authors_correct(gt, restored)
    g = gt.astype(np.float32) / 255.
    print("authors rgb:", repr(calculate_psnr(g * 255, corrected * 255, 0)),
          repr(calculate_ssim(g * 255, corrected * 255, 0)))
    gy, cy = bgr2ycbcr(g, y_only=True), bgr2ycbcr(corrected, y_only=True)
    print("authors y:", repr(calculate_psnr(gy * 255, cy * 255, 0)), repr(calculate_ssim(gy * 255, cy * 255, 0)))
    print("niqe restored:", repr(calculate_niqe(restored, 0, input_order='HWC', convert_to='y')))
    print("niqe gt:", repr(calculate_niqe(gt, 0, input_order='HWC', convert_to='y')))


def main() -> None:
    gt = synthetic_gt()
    report("synthetic", gt, synthetic_restored(gt))
    face = ROOT / ".." / "shared" / "data" / "aligned" / "Adele_crop.png"
    if face.is_file():
        img = cv2.imread(str(face), cv2.IMREAD_COLOR)
        report("Adele_crop", img, synthetic_restored(img))
    rs = np.random.RandomState(0)
    a, b = rs.randn(5, 5), rs.randn(5, 5)
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + 0.5 * np.eye(5)
    m1, m2 = rs.randn(5), rs.randn(5)
    # BasicSR's calculate_fid formula (its module imports torchvision's Inception, absent here).
    root = linalg.sqrtm(s1 @ s2).real
    print("fid:", repr(float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))))


if __name__ == "__main__":
    main()
