"""Is a detection a face at all? A geometric check of its five landmarks against its box.

Detectors sometimes fire on an eye, an ear or a patterned shirt; restoring such a patch "as a
face" pastes a face-shaped hallucination into the photo. A real face, at any in-plane rotation
and for most poses, has its mouth clearly below its eyes (in the face's own frame: along the
perpendicular of the eye line), its nose between the two, eyes a sensible fraction of the box
apart, and its landmarks near its box. The bounds are deliberately loose: they are meant to catch
geometry that cannot be a face, not to judge pose, so profiles and tilted heads pass.

Rows are facexlib's layout: x1, y1, x2, y2, score, then (x, y) of the image-left eye,
image-right eye, nose tip, image-left and image-right mouth corner.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LandmarkBounds:
    """Tolerances of :func:`implausibility`; each is a ratio, so they hold at any face size."""

    # eye distance / longer box side: frontal faces are ~0.3-0.45, profiles down to ~0.1
    eye_box_low: float = 0.04
    eye_box_high: float = 1.2
    # eye-to-mouth height (in the face frame) / eye distance: frontal ~1, profiles larger
    mouth_low: float = 0.25
    mouth_high: float = 4.0
    # nose position between the eye line (0) and the mouth line (1)
    nose_low: float = -0.25
    nose_high: float = 1.25
    # landmarks may lie outside the box by this fraction of its longer side
    box_margin: float = 0.5


DEFAULT_BOUNDS = LandmarkBounds()


def implausibility(row: np.ndarray, bounds: LandmarkBounds = DEFAULT_BOUNDS) -> str | None:
    """Why a ``(15,)`` detection cannot be a face, in a few words, or ``None`` when it can."""
    row = np.asarray(row, dtype=np.float64).reshape(-1)
    x1, y1, x2, y2 = row[:4]
    points = row[5:15].reshape(5, 2)
    if not np.isfinite(row[:15]).all():
        return "landmarks are not finite"
    side = max(x2 - x1, y2 - y1)
    if side <= 0:
        return "empty box"
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    eye_line = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_line))
    if not bounds.eye_box_low <= eye_dist / side <= bounds.eye_box_high:
        return f"eyes {eye_dist:.0f} px apart in a {side:.0f} px box"
    margin = bounds.box_margin * side
    if (points[:, 0].min() < x1 - margin or points[:, 0].max() > x2 + margin
            or points[:, 1].min() < y1 - margin or points[:, 1].max() > y2 + margin):
        return "landmarks far outside the box"
    # "Down" in the face's own frame: the eye line turned by +90° (image y points down), so a
    # tilted or rotated face is judged as upright.
    down = np.array([-eye_line[1], eye_line[0]]) / eye_dist
    eyes = (left_eye + right_eye) / 2
    mouth_height = float((((mouth_left + mouth_right) / 2) - eyes) @ down)
    if mouth_height < bounds.mouth_low * eye_dist:
        return "mouth not below the eyes"
    if mouth_height > bounds.mouth_high * eye_dist:
        return "mouth too far below the eyes"
    nose_at = float((nose - eyes) @ down) / mouth_height
    if not bounds.nose_low <= nose_at <= bounds.nose_high:
        return "nose not between eyes and mouth"
    return None


def split_plausible(dets: np.ndarray, bounds: LandmarkBounds = DEFAULT_BOUNDS,
                    ) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """``(kept rows, [(dropped row, reason), ...])`` for ``(N, 15)`` detections, order kept."""
    dets = np.asarray(dets).reshape(-1, 15)
    keep, dropped = [], []
    for i, row in enumerate(dets):
        reason = implausibility(row, bounds)
        if reason is None:
            keep.append(i)
        else:
            dropped.append((row, reason))
    return dets[keep], dropped


def drop_small(dets: np.ndarray, min_face: float | None) -> np.ndarray:
    """The ``(N, 15)`` detections whose box's shorter side is at least ``min_face`` pixels."""
    if not min_face:
        return dets
    sides = np.minimum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1])
    return dets[sides >= min_face]
