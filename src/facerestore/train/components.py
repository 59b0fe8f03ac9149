"""Eye and mouth boxes for the facial-component losses, from our own detector.

The official recipe reads ``FFHQ_eye_mouth_landmarks_512.pth``, made from 68-point landmarks of
FFHQ. For another dataset of aligned faces (or without that file), :func:`make_component_file`
detects the five landmarks of every face with facerestore's detector and writes a file in the
same layout (``{'00000000': {'left_eye': array([x, y, half_len]), 'right_eye': ..., 'mouth': ...}}``
at 512 px, keyed by the position of the image in the sorted folder), which ``component_path``
then names. Half lengths come from the five points: an eye box spans 0.32 of the distance between
the eyes and the mouth box 0.86 of the mouth's width, the proportions of the official boxes on
the FFHQ template (eyes 126 px apart with half length 20, a 112-px mouth with half length 48).
A face the detector misses gets the template boxes, and is counted.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..face.detectors import FaceDetector

EYE_HALF_PER_EYE_DISTANCE = 20.0 / 126.0
MOUTH_HALF_PER_MOUTH_WIDTH = 48.0 / 112.0


@dataclass
class ComponentFileReport:
    path: Path
    faces: int = 0
    detected: int = 0
    template_fallback: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        fallback = f"; {len(self.template_fallback)} without a detected face got the template boxes" \
            if self.template_fallback else ""
        return f"{self.path}: boxes for {self.faces} faces, {self.detected} from detected landmarks{fallback}"


def boxes_from_landmarks(points: np.ndarray, image_size: int | tuple[int, int]) -> dict[str, np.ndarray]:
    """``{'left_eye', 'right_eye', 'mouth'}: [x, y, half_len]`` at 512 px from five (x, y) points
    (image-left eye, image-right eye, nose, mouth left, mouth right) of a face image of
    ``image_size`` (a side, or (width, height); training resizes every face to a square)."""
    width, height = (image_size, image_size) if isinstance(image_size, (int, float, np.number)) else image_size
    p = np.asarray(points, dtype=np.float64).reshape(5, 2) * np.array([512.0 / width, 512.0 / height])
    eye_distance = float(np.linalg.norm(p[1] - p[0]))
    mouth_width = float(np.linalg.norm(p[4] - p[3]))
    mouth = (p[3] + p[4]) / 2
    eye_half = EYE_HALF_PER_EYE_DISTANCE * eye_distance
    return {"left_eye": np.array([p[0][0], p[0][1], eye_half]),
            "right_eye": np.array([p[1][0], p[1][1], eye_half]),
            "mouth": np.array([mouth[0], mouth[1], MOUTH_HALF_PER_MOUTH_WIDTH * mouth_width])}


def make_component_file(images: Iterable[str | Path], out: str | Path, *, detector: str | FaceDetector = "mtcnn",
                        progress: Callable[[Iterable], Iterable] | None = None) -> ComponentFileReport:
    """Detect every face of ``images`` (sorted paths, as the dataset lists them) and write the
    boxes in the official layout to ``out`` (atomically)."""
    import cv2
    import torch

    from ..face.detectors import load_detector
    from ..io.atomic import atomic_path
    from ..io.images import cv2_imread
    from .dataset import TEMPLATE_COMPONENTS_512

    detect = load_detector(detector) if isinstance(detector, str) else detector
    report = ComponentFileReport(Path(out))
    boxes: dict[str, dict[str, np.ndarray]] = {}
    paths = list(images)
    for index, path in enumerate(progress(paths) if progress else paths):
        img = cv2_imread(path, cv2.IMREAD_COLOR)
        key = f"{index:08d}"
        rows = detect.detect(img) if img is not None else np.zeros((0, 15), np.float32)
        if img is not None and len(rows):
            best = rows[np.argmax((rows[:, 2] - rows[:, 0]) * (rows[:, 3] - rows[:, 1]))]  # the face
            boxes[key] = boxes_from_landmarks(best[5:15], (img.shape[1], img.shape[0]))
            report.detected += 1
        else:
            boxes[key] = {k: np.array(v, dtype=np.float64) for k, v in TEMPLATE_COMPONENTS_512.items()}
            report.template_fallback.append(str(path))
        report.faces += 1
    with atomic_path(out) as tmp:
        torch.save(boxes, tmp)
    return report
