"""Greedy non-maximum suppression shared by the face detectors (numpy, no torchvision)."""
from __future__ import annotations

import numpy as np


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *,
        mode: str = "union", pixel_inclusive: bool = False) -> np.ndarray:
    """Kept indices, best score first.

    Boxes ``(K, 4)`` as x1, y1, x2, y2 are visited by descending score (stable for ties); a box is
    dropped when its overlap with a kept box is > ``iou_threshold``. ``mode="union"``:
    intersection / union, torchvision's rule (RetinaFace); ``"min"``: intersection / smaller
    area (MTCNN's last stage). ``pixel_inclusive`` adds 1 to widths and heights, the MATLAB
    convention MTCNN was trained with. Overlaps are computed in float32 and compared in float64,
    as torchvision does.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    boxes = np.asarray(boxes, dtype=np.float32)
    one = np.float32(1.0 if pixel_inclusive else 0.0)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep = []
    while order.size > 0:
        i, rest = order[0], order[1:]
        keep.append(i)
        inter_w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one)
        inter_h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one)
        inter = inter_w * inter_h
        if mode == "min":
            overlap = inter / np.minimum(areas[i], areas[rest])
        else:
            overlap = inter / (areas[i] + areas[rest] - inter)
        order = rest[overlap.astype(np.float64) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
