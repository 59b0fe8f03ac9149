"""The flicker measure: mean absolute frame-to-frame change of aligned face crops."""
from __future__ import annotations

import math

import numpy as np
import pytest

from _metric_images import synthetic_gt
from facerestore.metrics import compare_flicker, flicker_score


def _track(jitter: int, frames: int = 12, seed: int = 0) -> list[np.ndarray]:
    """Crops of one face over time: a slow drift (real motion) plus random shifts of up to
    ``jitter`` pixels (unsteady detections)."""
    rs = np.random.RandomState(seed)
    big = synthetic_gt(96, 96)
    crops = []
    for t in range(frames):
        dy, dx = 10 + t // 4 + rs.randint(-jitter, jitter + 1), 10 + rs.randint(-jitter, jitter + 1)
        crops.append(big[dy:dy + 64, dx:dx + 64])
    return crops


def test_steady_sequence_scores_lower_than_a_jittered_one():
    steady, jittered = _track(0), _track(3)
    assert flicker_score([steady]) < 0.5 * flicker_score([jittered])
    report = compare_flicker([steady], [jittered])
    assert report.ratio < 0.5 and report.restored == flicker_score([steady])
    assert compare_flicker([jittered], [steady]).ratio > 2


def test_known_value_and_pooling():
    a = np.full((8, 8, 3), 10, np.uint8)
    b = np.full((8, 8, 3), 13, np.uint8)
    assert flicker_score([[a, b, a]]) == pytest.approx(3.0)
    # Every consecutive pair counts once, over all tracks: (3 + 3 + 0) / 3.
    assert flicker_score([[a, b, a], [a, a]]) == pytest.approx(2.0)
    # A missed frame (None) breaks the chain: no pair spans it.
    assert flicker_score([[a, None, b, b]]) == pytest.approx(0.0)
    # 16-bit crops are measured on the 8-bit scale.
    assert flicker_score([[a.astype(np.uint16) * 257, b.astype(np.uint16) * 257]]) == pytest.approx(3.0)


def test_degenerate_inputs():
    a = np.zeros((4, 4), np.uint8)
    assert math.isnan(flicker_score([[a]]))
    assert math.isnan(flicker_score([]))
    assert math.isnan(compare_flicker([[a, a]], [[a, a]]).ratio)  # still input: ratio undefined
    with pytest.raises(ValueError, match="share a shape"):
        flicker_score([[a, np.zeros((5, 4), np.uint8)]])
    with pytest.raises(ValueError, match="tracks"):
        compare_flicker([[a, a]], [])
