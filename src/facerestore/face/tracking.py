"""Faces followed from frame to frame, with landmarks that hold still when the face does.

Restoring each frame on its own makes faces shimmer: the detector's five landmarks move by a
pixel or two from frame to frame even on a still face, the aligned crop moves with them, and the
network paints a slightly different face each time. Here:

* detections are associated with existing tracks by box overlap and landmark distance, so a face
  keeps its identity, and a track survives a few missed detections (it follows the image by
  optical flow meanwhile);
* the detector can run every N frames only, with optical flow carrying the landmarks in between;
* each track's landmarks go through a one-euro filter (Casiez et al., CHI 2012): a low-pass whose
  cut-off rises with the speed of the face, so a still face is held steady and a moving one is
  followed without lag.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import align


@dataclass
class Smoothing:
    """One-euro filter settings. ``min_cutoff`` (Hz) sets how still a still face is held (lower
    is steadier); ``beta`` how fast the cut-off opens with speed, in face sizes per second (higher
    follows motion more closely); ``d_cutoff`` (Hz) smooths the speed estimate itself."""

    min_cutoff: float = 0.5
    beta: float = 8.0
    d_cutoff: float = 1.0


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A one-euro filter over a set of (x, y) points with one shared cut-off, so the points of a
    face move together and the face's shape is not distorted by the filter.

    The speed that opens the cut-off is that of the points' mean, in ``scale`` units per second
    (the face's size), so the same settings work for small and large faces. With the defaults
    (30 fps, 1 px landmark noise, a 64 px face) the frame-to-frame jitter of a still face drops
    7-fold; a face crossing its own size in half a second trails by about 1% of its size.
    """

    def __init__(self, settings: Smoothing | None = None) -> None:
        self.settings = settings or Smoothing()
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time: float | None = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or self.speed is None or self.time is None:
            self.value, self.speed, self.time = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.time
        if not dt > 0:  # repeated or reordered timestamp: assume one 30 fps frame
            dt = 1 / 30
        s = self.settings
        raw_speed = (x - self.value) / dt
        a_d = _alpha(s.d_cutoff, dt)
        self.speed = a_d * raw_speed + (1 - a_d) * self.speed
        # The speed of the face as a whole (mean of the points' velocities): averaging over the
        # points keeps detector noise from opening the cut-off on a still face.
        v = self.speed.reshape(-1, 2) if self.speed.size % 2 == 0 else self.speed.reshape(-1, 1)
        speed = float(np.linalg.norm(v.mean(0))) / max(scale, 1e-6)
        a = _alpha(s.min_cutoff + s.beta * speed, dt)
        self.value = a * x + (1 - a) * self.value
        self.time = t
        return self.value.copy()


def face_scale(points: np.ndarray) -> float:
    """A face's size in pixels from its 5 landmarks, about the side of its aligned crop: four
    times the larger of the eye distance and the eye-to-mouth distance (one of them stays large
    when the head turns or nods; both are about a quarter of the FFHQ crop)."""
    p = np.asarray(points, dtype=np.float64).reshape(5, 2)
    eyes = np.linalg.norm(p[0] - p[1])
    eye_mouth = np.linalg.norm((p[0] + p[1]) / 2 - (p[3] + p[4]) / 2)
    return float(4 * max(eyes, eye_mouth, 0.25))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class TrackedFace:
    """A face to restore in one frame: its track and the (smoothed) landmarks to align it with."""

    track_id: int
    landmarks: np.ndarray  # (5, 2) float32, RetinaFace order
    detected: bool         # from a detection in this frame (not carried by flow)


@dataclass
class _Track:
    track_id: int
    points: np.ndarray     # (5, 2) latest raw landmarks (detected or carried by flow)
    box: np.ndarray        # (4,) x1, y1, x2, y2
    filter: OneEuroFilter
    since_detected: int = 0  # frames since a detection was matched to it
    shown: bool = False


@dataclass
class TrackerSettings:
    """How faces are followed. ``detect_every``: run the detector on every N-th frame (1 = every
    frame) and carry faces by optical flow in between; ``max_misses``: frames a face may go
    undetected before its track ends; ``smooth``: filter the landmarks (False: the per-frame
    behaviour, raw landmarks, no face shown while undetected)."""

    detect_every: int = 1
    max_misses: int = 10
    smooth: bool = True
    smoothing: Smoothing = field(default_factory=Smoothing)
    iou_threshold: float = 0.3
    landmark_threshold: float = 0.15  # mean landmark distance, in face sizes, to call it the same face
    eye_dist_threshold: float = 5.0
    only_center_face: bool = False


class FaceTracker:
    """Feed it frames in order (:meth:`update`); it gives the faces to restore in each."""

    def __init__(self, detector, settings: TrackerSettings | None = None) -> None:
        self.detector = detector
        self.settings = settings or TrackerSettings()
        self.tracks: list[_Track] = []
        self.frame_index = 0
        self.detections_run = 0
        self.faces_tracked = 0  # tracks that were restored in at least one frame
        self._next_id = 0
        self._prev_grey: np.ndarray | None = None

    # ---------------------------------------------------------------- one frame

    def update(self, frame_bgr: np.ndarray, time: float) -> list[TrackedFace]:
        s = self.settings
        grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        carried = self._carry_by_flow(grey)  # track ids whose flow succeeded
        detect = self.frame_index % s.detect_every == 0
        matched: set[int] = set()
        if detect:
            matched = self._detect_and_associate(frame_bgr)
        for track in self.tracks:
            if track.track_id not in matched:
                track.since_detected += 1
        self.tracks = [t for t in self.tracks if t.since_detected <= s.max_misses
                       and (t.track_id in carried or t.track_id in matched)]

        shown = self.tracks
        if s.only_center_face and len(shown) > 1:  # one face: the one detected now, else the newest
            shown = [max(shown, key=lambda t: (t.track_id in matched, -t.since_detected, t.track_id))]
        faces = []
        for track in shown:
            just_detected = track.track_id in matched
            # A face undetected at a detection frame is shown only in steady mode (coasting on flow);
            # between detection frames, a face carried by flow since its last detection is shown.
            missed = track.since_detected > (self.frame_index % s.detect_every if not detect else 0)
            if missed and not s.smooth:
                continue
            points = track.points
            if s.smooth:
                points = track.filter(points, time, face_scale(points))
            if not track.shown:
                track.shown = True
                self.faces_tracked += 1
            faces.append(TrackedFace(track.track_id, np.asarray(points, np.float32), just_detected))
        self._prev_grey = grey
        self.frame_index += 1
        return faces

    # ---------------------------------------------------------------- detection

    def _detect_and_associate(self, frame_bgr: np.ndarray) -> set[int]:
        s = self.settings
        dets = np.asarray(self.detector.detect(frame_bgr), dtype=np.float32).reshape(-1, 15)
        dets = align.select_faces(dets, frame_bgr.shape, eye_dist_threshold=s.eye_dist_threshold,
                                  only_center_face=s.only_center_face)
        self.detections_run += 1
        boxes, points = dets[:, :4].astype(np.float64), align.landmarks_from_detections(dets).astype(np.float64)
        pairs = []
        for ti, track in enumerate(self.tracks):
            scale = face_scale(track.points)
            for di in range(len(dets)):
                iou = box_iou(track.box, boxes[di])
                dist = float(np.linalg.norm(track.points - points[di], axis=1).mean()) / scale
                if iou >= s.iou_threshold or dist <= s.landmark_threshold:
                    pairs.append((dist + (1 - iou), ti, di))
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        matched: set[int] = set()
        for _, ti, di in sorted(pairs):  # greedy, cheapest first: a handful of faces per frame
            if ti in used_tracks or di in used_dets:
                continue
            used_tracks.add(ti)
            used_dets.add(di)
            track = self.tracks[ti]
            track.points, track.box, track.since_detected = points[di], boxes[di], 0
            matched.add(track.track_id)
        for di in range(len(dets)):
            if di not in used_dets:
                track = _Track(self._next_id, points[di], boxes[di], OneEuroFilter(s.smoothing))
                self._next_id += 1
                self.tracks.append(track)
                matched.add(track.track_id)
        return matched

    # ---------------------------------------------------------------- optical flow

    def _carry_by_flow(self, grey: np.ndarray) -> set[int]:
        """Move every track's landmarks and box with the image (sparse Lucas-Kanade flow inside
        the face box, a similarity fitted with RANSAC); returns the ids of tracks it could follow."""
        carried: set[int] = set()
        if self._prev_grey is None or self._prev_grey.shape != grey.shape:
            return carried
        for track in self.tracks:
            transform = _track_similarity(self._prev_grey, grey, track.box)
            if transform is None:
                continue
            track.points = _apply(transform, track.points)
            corners = _apply(transform, track.box.reshape(2, 2))
            track.box = np.concatenate([corners.min(0), corners.max(0)])
            carried.add(track.track_id)
        return carried


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:, :2].T + m[:, 2]


def _track_similarity(prev: np.ndarray, cur: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    h, w = prev.shape
    x1, y1, x2, y2 = box
    x1, y1 = max(0, int(x1)), max(0, int(y1))
    x2, y2 = min(w, int(math.ceil(x2))), min(h, int(math.ceil(y2)))
    if x2 - x1 < 8 or y2 - y1 < 8:
        return None
    size = min(x2 - x1, y2 - y1)
    mask = np.zeros_like(prev)
    mask[y1:y2, x1:x2] = 255
    pts = cv2.goodFeaturesToTrack(prev, maxCorners=60, qualityLevel=0.01, minDistance=max(2, size // 12),
                                  mask=mask)
    if pts is None or len(pts) < 6:  # a flat face patch: fall back to a grid
        gx, gy = np.meshgrid(np.linspace(x1, x2 - 1, 6), np.linspace(y1, y2 - 1, 6))
        pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)[:, None]
    win = int(np.clip(size // 4, 9, 31)) | 1
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)
    # nextPts=None: OpenCV allocates the output; its generated stubs do not say that None is allowed.
    nxt, ok, _ = cv2.calcOpticalFlowPyrLK(prev, cur, pts, None,  # pyright: ignore[reportArgumentType, reportCallIssue]
                                          winSize=(win, win), maxLevel=3, criteria=criteria)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(cur, prev, nxt, None,  # pyright: ignore[reportArgumentType, reportCallIssue]
                                                winSize=(win, win), maxLevel=3, criteria=criteria)
    # Keep points that come back where they started (forward-backward check).
    good = (ok.ravel() == 1) & (ok_back.ravel() == 1) & (np.linalg.norm((back - pts).reshape(-1, 2), axis=1) < 1.0)
    if good.sum() < 4:
        return None
    m, inliers = cv2.estimateAffinePartial2D(pts[good], nxt[good], method=cv2.RANSAC,
                                             ransacReprojThreshold=max(1.0, size / 50))
    if m is None or inliers is None or inliers.sum() < 4:
        return None
    return m
