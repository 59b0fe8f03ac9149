"""The embedded MTCNN detector: shipped weights, nets, NMS, and detection on real photos."""

from __future__ import annotations

import importlib.util
import zipfile
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from facerestore.archs.mtcnn import MTCNN, ONet, PNet, RNet
from facerestore.face.mtcnn import MTCNNDetector, mtcnn_state_dict
from facerestore.face.nms import nms

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                         [201.26117, 371.41043], [313.08905, 371.15118]], np.float32)
EXPECTED = {"photos/00.jpg": 2, "photos/10045.png": 3, "photos/Blake_Lively.jpg": 2,
            "aligned/Adele_crop.png": 1, "aligned/Julia_Roberts_crop.png": 1,
            "aligned/Justin_Timberlake_crop.png": 1, "aligned/Paris_Hilton_crop.png": 1}


@pytest.fixture(scope="module")
def detector():
    return MTCNNDetector()  # conftest runs the suite on one thread


# --- weights -------------------------------------------------------------------------------------

def test_weights_are_plain_arrays_with_the_model_names_and_shapes():
    path = resources.files("facerestore") / "data" / "mtcnn.npz"
    with resources.as_file(path) as p:
        assert all(n.endswith(".npy") for n in zipfile.ZipFile(p).namelist())
        with np.load(p, allow_pickle=False) as npz:  # raises on any pickled (object) entry
            arrays = {k: npz[k] for k in npz.files}
    expected = {k: tuple(v.shape) for k, v in MTCNN().state_dict().items()}
    assert {k: a.shape for k, a in arrays.items()} == expected
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays.values())
    assert sum(a.size for a in arrays.values()) == 495_850
    assert arrays["onet.dense5.weight"].shape == (256, 1152)
    licence = (resources.files("facerestore") / "data" / "LICENSE-mtcnn.txt").read_text()
    assert "Copyright (c) 2019 Timothy Esler" in licence
    MTCNN().load_state_dict(mtcnn_state_dict(), strict=True)


def test_convert_script_writes_reproducible_npz(tmp_path):
    spec = importlib.util.spec_from_file_location("convert", REPO / "scripts" / "convert_mtcnn_weights.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    arrays = {"pnet.conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
              "pnet.conv1.bias": np.ones(2, np.float32)}
    convert.write_npz(arrays, tmp_path / "a.npz")
    convert.write_npz(arrays, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz", allow_pickle=False) as npz:
        assert npz.files == list(arrays)
        np.testing.assert_array_equal(npz["pnet.conv1.weight"], arrays["pnet.conv1.weight"])


# --- nets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("h, w", [(12, 12), (31, 40), (50, 23)])
def test_pnet_shapes(h, w):
    prob, offsets = PNet().eval()(torch.randn(2, 3, h, w))
    # conv3 -> ceil-pool 2 -> conv3 -> conv3: one cell per 12x12 window, stride 2.
    oh, ow = -(-(h - 2) // 2) - 4, -(-(w - 2) // 2) - 4
    assert prob.shape == (2, oh, ow) and offsets.shape == (2, 4, oh, ow)
    assert ((prob >= 0) & (prob <= 1)).all()


def test_rnet_onet_shapes():
    prob, offsets = RNet().eval()(torch.randn(5, 3, 24, 24))
    assert prob.shape == (5,) and offsets.shape == (5, 4)
    prob, offsets, marks = ONet().eval()(torch.randn(5, 3, 48, 48))
    assert prob.shape == (5,) and offsets.shape == (5, 4) and marks.shape == (5, 10)


# --- NMS -----------------------------------------------------------------------------------------

def _nms_brute(boxes, scores, thr, mode, one):
    """Definition: walk boxes by falling score; keep one unless it overlaps a kept box > thr."""
    keep = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        ok = True
        for j in keep:
            iw = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]) + one)
            ih = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]) + one)
            ai = (boxes[i, 2] - boxes[i, 0] + one) * (boxes[i, 3] - boxes[i, 1] + one)
            aj = (boxes[j, 2] - boxes[j, 0] + one) * (boxes[j, 3] - boxes[j, 1] + one)
            denom = min(ai, aj) if mode == "min" else ai + aj - iw * ih
            ok &= iw * ih / denom <= thr
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("mode, inclusive, thr", [("union", False, 0.5), ("union", False, 0.7),
                                                  ("min", True, 0.7), ("union", True, 0.3)])
def test_nms_matches_brute_force(mode, inclusive, thr):
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 60, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (200, 2))], 1).astype(np.float32)
    scores = rng.permutation(200).astype(np.float32)  # distinct, so the order is unambiguous
    got = nms(boxes, scores, thr, mode=mode, pixel_inclusive=inclusive)
    want = _nms_brute(boxes, scores, thr, mode, 1.0 if inclusive else 0.0)
    assert got.tolist() == want and 5 < len(want) < 200


def test_nms_min_mode_drops_a_box_inside_another():
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40]], np.float32)  # IoU 0.09, inside: 1.0
    assert nms(boxes, np.array([0.9, 0.8]), 0.7).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), 0.7, mode="min").tolist() == [0]


# --- detection -----------------------------------------------------------------------------------

def _check_faces(faces: np.ndarray, expected: int, name: str) -> None:
    assert faces.dtype == np.float32 and faces.shape == (expected, 15), name
    assert (np.diff(faces[:, 4]) <= 0).all(), "best score first"
    for face in faces:
        x1, y1, x2, y2 = face[:4]
        pts = face[5:].reshape(5, 2)
        assert ((pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1) & (pts[:, 1] < y2)).all(), name
        # image-left eye / mouth corner before the image-right ones; eyes above nose above mouth
        assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0], name
        assert max(pts[0, 1], pts[1, 1]) < pts[2, 1] < min(pts[3, 1], pts[4, 1]), name


def test_detects_every_face_of_the_test_photos(detector, shared_data):
    for rel, expected in EXPECTED.items():
        img = cv2.imread(str(shared_data / rel))
        if rel == "photos/00.jpg":  # 1297x1920 with two big faces: half size keeps the test fast
            img = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        _check_faces(detector.detect(img), expected, rel)


def test_small_faces_and_landmarks_on_aligned_crop(detector, shared_data):
    img = cv2.imread(str(shared_data / "photos/10045.png"))
    small = cv2.resize(img, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)  # faces ~25 px
    _check_faces(detector.detect(small), 3, "10045 x0.3")
    # On an official FFHQ-aligned crop the 5 points sit near the alignment template.
    crop = cv2.imread(str(shared_data / "aligned/Adele_crop.png"))
    pts = detector.detect(crop)[0, 5:].reshape(5, 2)
    assert np.linalg.norm(pts - TEMPLATE_512, axis=1).max() < 16
    # The nets expect RGB: the same crop given as RGB instead of BGR scores differently.
    assert detector.detect(crop[:, :, ::-1], conf_threshold=0.0)[0, 4] != detector.detect(crop)[0, 4]


def test_no_face_in_face_free_images(detector):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:240, 0:320]
    gradient = np.stack([xx * 255 // 320, yy * 255 // 240, (xx + yy) * 255 // 560], -1).astype(np.uint8)
    for img in (noise, gradient):
        assert detector.detect(img, conf_threshold=0.0).shape == (0, 15)
    assert detector.detect(np.zeros((10, 10, 3), np.uint8)).shape == (0, 15)  # below min_face_size
    assert detector.detect(np.full((64, 64), 128, np.uint8)).shape == (0, 15)  # grayscale accepted
