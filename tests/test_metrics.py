"""PSNR, SSIM, NIQE, the authors' colour matching and the Fréchet distance, pinned to analytic values
and to numbers computed once with the official BasicSR functions.

The BasicSR literals below come from ``/tmp/refenv/bin/python benchmarks/metrics_reference.py``
(BasicSR's calculate_psnr / calculate_ssim / calculate_niqe run unchanged through the reference
kit, on the images of tests/_metric_images.py and on ../shared/data/aligned/Adele_crop.png with
the same numpy noise). The published NIQE of BasicSR's baboon.png (5.7295763) cannot be checked
here: baboon.png is not among our data.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from facerestore.metrics import bgr_to_y, frechet_distance, match_mean_std, niqe, psnr, ssim
from facerestore.metrics.fid import feature_stats, fid_from_features
from facerestore.metrics.niqe import imresize_half

from _metric_images import synthetic_gt, synthetic_restored

# BasicSR values on synthetic_gt() vs synthetic_restored(gt): (crop_border, y) -> (psnr, ssim).
BASICSR_SYNTHETIC = {
    (0, False): (29.28030473706604, 0.7083000063797203),
    (0, True): (35.68145677467236, 0.8500921494750464),
    (4, False): (29.280860141846155, 0.7080206288234324),
    (4, True): (35.673495008580204, 0.850231325123206),
}
# The authors' script (colour matching, then BasicSR) on the same pair: RGB and Y.
AUTHORS_SYNTHETIC = {False: (31.115020672890573, 0.715210909876853), True: (35.99791654074375, 0.8554370639735103)}
BASICSR_NIQE_SYNTHETIC = {"restored": 18.37828055745416, "gt": 56.68782808714788}
BASICSR_ADELE = {
    (0, False): (29.303561208062018, 0.6266013804262885),
    (0, True): (35.69397199549374, 0.8229341353509035),
    (4, False): (29.295662616699047, 0.6267998176488899),
    (4, True): (35.69261703725108, 0.8230721634781295),
}
AUTHORS_ADELE = {False: (31.04213889838816, 0.6312884737811983), True: (35.83247776865285, 0.8254153866341503)}
BASICSR_NIQE_ADELE = {"restored": 10.341546337900617, "gt": 7.872259811368161}


def _authors(gt: np.ndarray, restored: np.ndarray, y: bool) -> tuple[float, float]:
    g = gt.astype(np.float32) / 255
    c = match_mean_std(restored.astype(np.float32) / 255, g)
    return psnr(g * 255, c * 255, 0, y), ssim(g * 255, c * 255, 0, y)


def _check_against(gt, restored, basicsr, authors, niqe_ref):
    for (crop, y), (p_ref, s_ref) in basicsr.items():
        assert psnr(gt, restored, crop, y) == pytest.approx(p_ref, rel=1e-10, abs=0)
        assert ssim(gt, restored, crop, y) == pytest.approx(s_ref, rel=0, abs=1e-10)
    # The authors' colour match and NIQE reduce in float32, whose sums depend on the CPU's SIMD width
    # (references made on a Zen 4; on an Intel Xeon PSNR moved 1e-6, NIQE 2e-5): 1e-5 / 1e-4 still pin the
    # formula (a wrong crop, channel order or constant moves these by far more).
    for y, (p_ref, s_ref) in authors.items():
        p, s = _authors(gt, restored, y)
        assert p == pytest.approx(p_ref, rel=1e-5, abs=0)
        assert s == pytest.approx(s_ref, rel=0, abs=1e-5)
    assert niqe(restored) == pytest.approx(niqe_ref["restored"], rel=1e-4)
    assert niqe(gt) == pytest.approx(niqe_ref["gt"], rel=1e-4)


def test_basicsr_reference_values_synthetic():
    gt = synthetic_gt()
    _check_against(gt, synthetic_restored(gt), BASICSR_SYNTHETIC, AUTHORS_SYNTHETIC, BASICSR_NIQE_SYNTHETIC)


def test_basicsr_reference_values_real_face(shared_data):
    import cv2

    gt = cv2.imread(str(shared_data / "aligned" / "Adele_crop.png"), cv2.IMREAD_COLOR)
    _check_against(gt, synthetic_restored(gt), BASICSR_ADELE, AUTHORS_ADELE, BASICSR_NIQE_ADELE)


def test_identical_images():
    gt = synthetic_gt(64, 72)
    assert psnr(gt, gt) == math.inf
    assert psnr(gt, gt, crop_border=3, test_y_channel=True) == math.inf
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    assert ssim(gt, gt, 2, True) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("d", [1, 5, 20])
def test_psnr_of_a_known_noise_pattern(d):
    # A checkerboard of ±d on any image: every pixel is off by exactly d, so MSE = d².
    gt = np.clip(synthetic_gt(40, 48), 30, 225)
    yy, xx = np.mgrid[0:40, 0:48]
    sign = np.where((yy + xx) % 2 == 0, 1, -1)[..., None]
    noisy = (gt.astype(np.int16) + d * sign).astype(np.uint8)
    assert psnr(gt, noisy) == pytest.approx(20 * math.log10(255 / d), abs=1e-12)
    # Only a quarter of the pixels changed: MSE = d² / 4.
    quarter = gt.astype(np.int16).copy()
    quarter[::2, ::2] += d
    assert psnr(gt, quarter.astype(np.uint8)) == pytest.approx(10 * math.log10(255 ** 2 / (d * d / 4)), abs=1e-12)


def test_ssim_of_flat_images_is_the_luminance_term():
    a, b = np.full((20, 20), 100.0), np.full((20, 20), 140.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 140 + c1) / (100 ** 2 + 140 ** 2 + c1), abs=1e-12)


def test_y_channel_formula():
    img = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]]], dtype=np.uint8)  # BGR
    y = bgr_to_y(img)[0, :, 0]
    assert y == pytest.approx([235.0, 16.0, 16 + 24.966, 16 + 65.481], abs=1e-4)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((10, 30)), np.zeros((10, 30)))


def test_match_mean_std_sets_the_gt_statistics():
    gt = synthetic_gt(50, 60).astype(np.float32) / 255
    affine = np.clip(0.6 * gt + 0.15, 0, 1)
    out = match_mean_std(affine, gt)
    for c in range(3):
        assert out[..., c].mean() == pytest.approx(gt[..., c].mean(), abs=1e-6)
        assert out[..., c].std() == pytest.approx(gt[..., c].std(), abs=1e-6)
    # An affine change of each channel is undone entirely (up to float32 rounding).
    assert np.abs(out - gt).max() < 1e-5
    assert affine.dtype == np.float32 and not np.shares_memory(out, affine)


def test_niqe_needs_two_blocks_and_grey_equals_y():
    with pytest.raises(ValueError, match="at least"):
        niqe(synthetic_gt(100, 100))
    img = synthetic_gt()
    y = bgr_to_y(img)[..., 0]
    assert niqe(y) == niqe(img)  # a 2-D input is taken as the Y channel itself


def test_matlab_imresize_half_keeps_constants_and_linear_ramps():
    const = np.full((40, 30), 0.25, np.float32)
    assert np.allclose(imresize_half(const), 0.25, atol=1e-6)
    ramp = np.tile(np.arange(40, dtype=np.float32), (30, 1)).T  # value = row index
    out = imresize_half(ramp)
    assert out.shape == (20, 15)
    # Bicubic weights reproduce linear functions: output row j samples input position 2j + 0.5.
    assert np.allclose(out[3:-3, :], (2 * np.arange(3, 17) + 0.5)[:, None], atol=1e-4)


def test_frechet_distance_known_gaussians():
    mu = np.array([1.0, -2.0, 0.5])
    cov = np.diag([1.0, 4.0, 9.0])
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0, abs=1e-9)
    # Diagonal covariances: |mu1 - mu2|² + Σ (√a − √b)².
    cov2 = np.diag([4.0, 1.0, 9.0])
    mu2 = mu + np.array([3.0, 0.0, 4.0])
    assert frechet_distance(mu, cov, mu2, cov2) == pytest.approx(25 + 1 + 1 + 0, abs=1e-9)
    # Rotating both covariances together changes nothing.
    q, _ = np.linalg.qr(np.random.RandomState(3).randn(3, 3))
    assert frechet_distance(q @ mu, q @ cov @ q.T, q @ mu2, q @ cov2 @ q.T) == pytest.approx(27, abs=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_value():
    # Same draws as benchmarks/metrics_reference.py, whose scipy.linalg.sqrtm route (BasicSR's
    # calculate_fid formula) gave this literal.
    rs = np.random.RandomState(0)
    a, b = rs.randn(5, 5), rs.randn(5, 5)
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + 0.5 * np.eye(5)
    m1, m2 = rs.randn(5), rs.randn(5)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(16.478743272118344, rel=1e-9)
    mean, cov = feature_stats(np.random.RandomState(1).randn(50, 4))
    assert mean.shape == (4,) and cov.shape == (4, 4)
    with pytest.raises(ValueError, match="differ in length"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


@pytest.mark.parametrize("n", [4, 12, 60])
def test_fid_from_features_equals_the_frechet_distance(n):
    # n - 1 < d takes the small-matrix route, n - 1 >= d the plain one; both must give the same value
    # (to 1e-7: the plain route takes square roots of rounding-level eigenvalues of a singular
    # covariance, which the small route never sees).
    rs = np.random.RandomState(n)
    feats = rs.rand(n, 20) ** 2
    a = rs.randn(20, 25)
    mu_ref, sigma_ref = rs.rand(20), a @ a.T / 25
    mean, cov = feature_stats(feats)
    assert fid_from_features(feats, mu_ref, sigma_ref) == pytest.approx(
        frechet_distance(mean, cov, mu_ref, sigma_ref), rel=1e-7)
