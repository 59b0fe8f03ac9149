"""Face tracking and landmark smoothing on synthetic sequences (no video files, no PyAV)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from facerestore.face import align
from facerestore.face.tracking import FaceTracker, OneEuroFilter, Smoothing, TrackerSettings, face_scale

FPS = 30
FACE = 64  # side of the aligned crop the landmarks describe
BASE = align.face_template(FACE).astype(np.float64)  # (5, 2)


def _run(path, noise=1.0, seed=0, settings=None):
    """Filter noisy landmarks of a face whose true offset at frame i is ``path(i)``; returns the
    errors (filtered - true) of each frame's landmark mean, and the raw ones."""
    rng = np.random.default_rng(seed)
    f = OneEuroFilter(settings)
    errors, raw = [], []
    for i in range(90):
        true = BASE + path(i)
        noisy = true + rng.normal(0, noise, (5, 2))
        out = f(noisy, i / FPS, face_scale(noisy))
        errors.append((out - true).mean(0))
        raw.append((noisy - true).mean(0))
    return np.array(errors)[15:], np.array(raw)[15:]


def _jitter(errors: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(errors, axis=0), axis=1).mean())


def test_face_scale_is_about_the_crop_side():
    assert face_scale(BASE) == pytest.approx(FACE, rel=0.05)
    assert face_scale(BASE * 2) == pytest.approx(2 * FACE, rel=0.05)


def test_one_euro_holds_a_still_face_still():
    errors, raw = _run(lambda i: np.zeros(2))
    assert _jitter(errors) < _jitter(raw) / 4


def test_one_euro_follows_motion_without_lag():
    speed = 0.5 * FACE / FPS  # half the face's size per second: a brisk head movement
    errors, raw = _run(lambda i: np.array([speed * i, 0.0]))
    lag = -errors[:, 0].mean()
    assert abs(lag) < 0.02 * FACE  # trails by less than 2% of the face
    assert _jitter(errors) < _jitter(raw) / 1.5


def test_one_euro_catches_up_with_a_jump_within_a_few_frames():
    rng = np.random.default_rng(0)
    f = OneEuroFilter()
    for i in range(30):
        f(BASE + rng.normal(0, 0.5, (5, 2)), i / FPS, FACE)
    jumped = BASE + [FACE / 2, 0]  # a cut to another shot: the face is half its size away
    outs = [f(jumped, (30 + k) / FPS, FACE) for k in range(5)]
    assert np.abs(outs[4] - jumped).max() < 0.05 * FACE


def test_one_euro_handles_repeated_timestamps():
    f = OneEuroFilter(Smoothing())
    f(BASE, 0.0, FACE)
    out = f(BASE + 1, 0.0, FACE)  # no division by zero, a finite answer between old and new
    assert np.isfinite(out).all() and (out >= BASE).all() and (out <= BASE + 1).all()


# --------------------------------------------------------------------------- tracker


def _scene(faces_at: list[tuple[float, float]], size=(240, 320)) -> np.ndarray:
    """A textured frame with a textured square (a 'face') at each given top-left corner."""
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (*size, 3)).astype(np.float32), (0, 0), 2).astype(np.uint8)
    patch = cv2.GaussianBlur(np.random.default_rng(2).uniform(0, 255, (FACE, FACE, 3)).astype(np.float32),
                             (0, 0), 1.5).astype(np.uint8)
    for x, y in faces_at:
        m = np.float32([[1, 0, x], [0, 1, y]])
        warped = cv2.warpAffine(patch, m, (size[1], size[0]))
        mask = cv2.warpAffine(np.ones((FACE, FACE), np.float32), m, (size[1], size[0]))[:, :, None]
        img = (warped * mask + img * (1 - mask)).astype(np.uint8)
    return img


class ListDetector:
    """Reports, for call k, the faces at ``positions[k]`` (top-left corners), in a shuffled order."""

    def __init__(self, positions, seed=0):
        self.positions, self.calls, self.rng = positions, 0, np.random.default_rng(seed)

    def detect(self, img, conf_threshold=0.97):
        faces = list(self.positions[self.calls])
        self.calls += 1
        self.rng.shuffle(faces)
        rows = [np.concatenate([[x, y, x + FACE, y + FACE, 0.99], (BASE + [x, y]).ravel()]) for x, y in faces]
        return np.array(rows, np.float32).reshape(-1, 15)


def test_two_faces_keep_their_identities():
    a = [(20 + 3 * i, 40.0) for i in range(12)]
    b = [(220 - 3 * i, 120.0) for i in range(12)]
    tracker = FaceTracker(ListDetector([[p, q] for p, q in zip(a, b, strict=True)]), TrackerSettings(smooth=False))
    ids_at = {}
    for i in range(12):
        for face in tracker.update(_scene([a[i], b[i]]), i / FPS):
            ids_at.setdefault(face.track_id, []).append(face.landmarks[2, 0] - BASE[2, 0])
    assert sorted(ids_at) == [0, 1] and tracker.faces_tracked == 2
    xs = sorted(ids_at.values(), key=lambda v: v[0])
    assert np.allclose(xs[0], [p[0] for p in a], atol=1e-3)  # one id follows a, the other b
    assert np.allclose(xs[1], [p[0] for p in b], atol=1e-3)


def test_a_track_ends_after_max_misses_and_a_new_face_gets_a_new_id():
    pos = [(60.0 + i, 60.0) for i in range(10)]
    seen = [[pos[i]] if i < 3 or i >= 8 else [] for i in range(10)]  # gone for frames 3..7
    tracker = FaceTracker(ListDetector(seen), TrackerSettings(max_misses=2, smooth=True))
    ids = []
    for i in range(10):
        frame = _scene([pos[i]] if i < 3 or i >= 8 else [])
        ids.append([f.track_id for f in tracker.update(frame, i / FPS)])
    assert ids[:3] == [[0]] * 3
    assert ids[8:] == [[1], [1]]  # too long gone: a new identity
    assert all(len(x) <= 1 for x in ids)


def test_optical_flow_carries_faces_between_detections():
    pos = [(40 + 2.5 * i, 50 + 1.5 * i) for i in range(9)]
    detector = ListDetector([[pos[0]], [pos[4]], [pos[8]]])  # called on frames 0, 4, 8
    tracker = FaceTracker(detector, TrackerSettings(detect_every=4, smooth=False))
    for i in range(9):
        faces = tracker.update(_scene([pos[i]]), i / FPS)
        assert len(faces) == 1
        assert np.abs(faces[0].landmarks - (BASE + pos[i])).max() < 0.6, i
        assert faces[0].detected == (i % 4 == 0)
    assert detector.calls == 3


def test_only_center_face_restores_one_face():
    a, b = (20.0, 40.0), (200.0, 120.0)
    tracker = FaceTracker(ListDetector([[a, b]] * 3), TrackerSettings(only_center_face=True))
    for i in range(3):
        assert len(tracker.update(_scene([a, b]), i / FPS)) == 1
