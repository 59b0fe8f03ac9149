"""Image-quality metrics as the GFPGAN authors compute them, and a temporal flicker measure.

PSNR/SSIM/NIQE are plain numpy (:mod:`.psnr_ssim`, :mod:`.niqe`); the network-based metrics
(:mod:`.identity` angle, :mod:`.lpips`, :mod:`.fid` Inception features, :mod:`.landmarks`) live in
their own modules and build their networks only when asked.
``facerestore evaluate`` (:mod:`.evaluate`) runs them over a folder pair.
"""
from __future__ import annotations

from .fid import frechet_distance
from .niqe import niqe
from .psnr_ssim import bgr_to_y, match_mean_std, psnr, ssim
from .temporal import FlickerReport, compare_flicker, flicker_score

__all__ = ["psnr", "ssim", "bgr_to_y", "match_mean_std", "niqe", "frechet_distance",
           "flicker_score", "compare_flicker", "FlickerReport"]
