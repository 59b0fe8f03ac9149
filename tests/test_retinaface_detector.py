"""RetinaFace post-processing (priors, decoding, NMS, rescaling) and the detector's pre-processing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from facerestore.archs.retinaface import RetinaFace
from facerestore.face.nms import nms
from facerestore.face.retinaface import (
    MEAN_BGR,
    RetinaFaceDetector,
    decode_boxes,
    decode_landmarks,
    postprocess,
    prior_boxes,
    resize_factor,
)


def test_prior_boxes_match_direct_formula():
    h, w = 40, 70
    got = prior_boxes(h, w)
    expected = []
    for sizes, step in zip(((16, 32), (64, 128), (256, 512)), (8, 16, 32), strict=True):
        for i in range(math.ceil(h / step)):
            for j in range(math.ceil(w / step)):
                for s in sizes:
                    expected.append([(j + 0.5) * step / w, (i + 0.5) * step / h, s / w, s / h])
    assert got.shape == (sum(math.ceil(h / s) * math.ceil(w / s) * 2 for s in (8, 16, 32)), 4) == (132, 4)
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.tensor(expected, dtype=torch.float32))


def test_decode_hand_computed():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.1]])
    loc = torch.tensor([[1.0, -1.0, 0.0, math.log(2.0) / 0.2]])
    # centre (0.5 + 1 * 0.1 * 0.2, 0.5 - 1 * 0.1 * 0.1) = (0.52, 0.49); size (0.2, 0.1 * 2)
    torch.testing.assert_close(decode_boxes(loc, priors), torch.tensor([[0.42, 0.39, 0.62, 0.59]]))
    pre = torch.tensor([[0.0, 0.0, 1.0, 2.0, -1.0, 0.0, 0.0, -3.0, 5.0, 5.0]])
    # point = centre + pre * 0.1 * (w, h)
    expected = [[0.5, 0.5, 0.52, 0.52, 0.48, 0.5, 0.5, 0.47, 0.6, 0.55]]
    torch.testing.assert_close(decode_landmarks(pre, priors), torch.tensor(expected))


def _nms_reference(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)

    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        if all(iou(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (200, 2))
    wh = rng.uniform(5, 40, (200, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    keep = nms(boxes, scores, 0.4)
    assert keep.dtype == np.int64
    assert 10 < len(keep) < 200  # the case actually suppresses something
    assert keep.tolist() == _nms_reference(boxes.astype(np.float64), scores, 0.4)


def test_nms_empty():
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.4).shape == (0,)


def _encode(box, landmarks, prior):
    """Inverse of the decoding: network outputs that decode to ``box`` / ``landmarks`` (normalised)."""
    cx, cy, pw, ph = prior
    loc = [((box[0] + box[2]) / 2 - cx) / (0.1 * pw), ((box[1] + box[3]) / 2 - cy) / (0.1 * ph),
           math.log((box[2] - box[0]) / pw) / 0.2, math.log((box[3] - box[1]) / ph) / 0.2]
    pre = []
    for k, p in enumerate(landmarks):  # x, y, x, y, ...
        centre, size = (cx, pw) if k % 2 == 0 else (cy, ph)
        pre.append((p - centre) / (0.1 * size))
    return loc, pre


def _planted_outputs(h: int, w: int, plants: list[tuple[int, float, list[float], list[float]]]):
    """Raw outputs for an (h, w) network input: background everywhere, faces at the planted priors.

    plants: (prior index, score, box (x1, y1, x2, y2) in pixels, 5 landmarks (x, y) in pixels).
    """
    priors = prior_boxes(h, w).double()
    n = len(priors)
    loc, landmarks = torch.zeros(n, 4), torch.zeros(n, 10)
    conf = torch.tensor([[0.99, 0.01]]).repeat(n, 1)
    scale = np.array([w, h] * 5, dtype=np.float64)
    for idx, score, box, points in plants:
        box_code, points_code = _encode(np.array(box) / scale[:4], np.array(points) / scale, priors[idx].tolist())
        loc[idx], landmarks[idx] = torch.tensor(box_code), torch.tensor(points_code)
        conf[idx] = torch.tensor([1 - score, score])
    return loc, conf, landmarks


FACE_A = ([10.0, 12.0, 40.0, 50.0], [18, 25, 32, 24, 25, 33, 20, 42, 31, 41])
FACE_B = ([50.0, 8.0, 90.0, 60.0], [60, 25, 80, 26, 70, 38, 62, 50, 78, 50])
FACE_A_SHIFTED = ([12.0, 13.0, 41.0, 52.0], [19, 26, 33, 25, 26, 34, 21, 43, 32, 42])  # IoU with A > 0.4


def test_postprocess_decodes_sorts_suppresses_and_rescales():
    h, w = 64, 96
    loc, conf, landmarks = _planted_outputs(h, w, [
        (10, 0.98, *FACE_A), (200, 0.995, *FACE_B), (30, 0.985, *FACE_A_SHIFTED), (40, 0.5, *FACE_B)])
    dets = postprocess(loc, conf, landmarks, (h, w), resize=1.0, conf_threshold=0.97)
    assert dets.dtype == np.float32 and dets.shape == (2, 15)
    # B first (higher score); A_shifted (0.985) beats A (0.98) and suppresses it; 0.5 is below threshold.
    np.testing.assert_allclose(dets[:, 4], [0.995, 0.985], rtol=1e-6)
    np.testing.assert_allclose(dets[0, :4], FACE_B[0], atol=1e-3)
    np.testing.assert_allclose(dets[0, 5:], FACE_B[1], atol=1e-3)
    np.testing.assert_allclose(dets[1, :4], FACE_A_SHIFTED[0], atol=1e-3)
    np.testing.assert_allclose(dets[1, 5:], FACE_A_SHIFTED[1], atol=1e-3)
    # The network saw an image resized by 0.5: coordinates come back in original pixels (x2).
    half = postprocess(loc, conf, landmarks, (h, w), resize=0.5, conf_threshold=0.97)
    np.testing.assert_allclose(half[:, :4], 2 * dets[:, :4], rtol=1e-6)
    np.testing.assert_allclose(half[:, 5:], 2 * dets[:, 5:], rtol=1e-6)
    assert postprocess(loc, conf, landmarks, (h, w), conf_threshold=0.999).shape == (0, 15)


class PlantedNet(nn.Module):
    """Stands in for RetinaFace: records its input and returns outputs with planted faces."""

    def __init__(self, plants):
        super().__init__()
        self.plants = plants
        self.seen: torch.Tensor | None = None

    def forward(self, x):
        self.seen = x
        loc, conf, landmarks = _planted_outputs(x.shape[2], x.shape[3], self.plants)
        return loc[None], conf[None], landmarks[None]


def test_detect_preprocesses_and_returns_original_pixels():
    img = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    net = PlantedNet([(10, 0.98, *FACE_A), (200, 0.995, *FACE_B)])
    dets = RetinaFaceDetector(net).detect(img)  # use_origin_size: the network sees the image as is
    expected = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None] - torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    assert torch.equal(net.seen, expected)  # BGR order kept, mean subtracted, no scaling
    np.testing.assert_allclose(dets[:, :4], [FACE_B[0], FACE_A[0]], atol=1e-3)
    np.testing.assert_allclose(dets[:, 5:], [FACE_B[1], FACE_A[1]], atol=1e-3)


def test_detect_with_resize_rule_rescales_back():
    img = np.full((40, 60, 3), 128, dtype=np.uint8)
    resize = resize_factor(40, 60)
    assert resize == pytest.approx(2150 / 60)  # 1600 / 40 would make the long side 2400 > 2150
    net = PlantedNet([(5000, 0.99, [100.0, 120.0, 500.0, 640.0], [200, 300, 400, 300, 300, 400, 220, 520, 380, 520])])
    dets = RetinaFaceDetector(net).detect(img, use_origin_size=False)
    assert tuple(net.seen.shape[2:]) == (round(40 * resize), round(60 * resize))
    np.testing.assert_allclose(dets[0, :4], np.array([100, 120, 500, 640]) / resize, rtol=1e-4)
    np.testing.assert_allclose(dets[0, 5:7], np.array([200, 300]) / resize, rtol=1e-4)


def test_resize_factor_short_side_rule():
    assert resize_factor(480, 640) == pytest.approx(1600 / 480)
    assert resize_factor(900, 1200) == pytest.approx(1600 / 900)  # long side 2133 <= 2150
    assert resize_factor(100, 1000) == pytest.approx(2.15)


def test_detect_with_real_network_runs():
    net = RetinaFace("mobile0.25")
    dets = RetinaFaceDetector(net).detect(np.zeros((48, 64, 3), np.uint8), conf_threshold=0.0)
    assert dets.dtype == np.float32 and dets.shape[1] == 15 and len(dets) > 0
    assert np.all(np.diff(dets[:, 4]) <= 0)  # best first
    with pytest.raises(ValueError):
        RetinaFaceDetector(net).detect(np.zeros((48, 64), np.uint8))
