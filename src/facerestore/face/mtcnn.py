"""Offline face detector with 5 landmarks: MTCNN, with the weights shipped in facerestore/data.

The cascade follows facenet-pytorch 2.6.0's `detect_face` step for step (same pyramid, box
arithmetic, crops and NMS conventions) so its detections match that pipeline; the code is our own
and needs neither torchvision nor facenet-pytorch. Weights: MIT, see data/LICENSE-mtcnn.txt.

    det = MTCNNDetector()
    faces = det.detect(cv2.imread("photo.jpg"))  # (N, 15): box, score, 5 (x, y) landmarks
"""

from __future__ import annotations

from importlib import resources

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from facerestore.archs.mtcnn import MTCNN
from facerestore.face.nms import nms
from facerestore.face.sanity import drop_small

WEIGHTS_FILE = "mtcnn.npz"


def mtcnn_state_dict() -> dict[str, torch.Tensor]:
    """The shipped P/R/O-Net weights, read without pickle, keyed like `MTCNN().state_dict()`."""
    with resources.as_file(resources.files("facerestore") / "data" / WEIGHTS_FILE) as path:
        with np.load(path, allow_pickle=False) as npz:
            return {name: torch.from_numpy(npz[name].copy()) for name in npz.files}


def _nms_t(boxes: torch.Tensor, iou_threshold: float, **kwargs) -> torch.Tensor:
    """nms() on a (K, >=5) tensor of (x1, y1, x2, y2, score, ...); returns the kept rows."""
    b = boxes.detach().cpu().numpy()
    keep = nms(b[:, :4], b[:, 4], iou_threshold, **kwargs)
    return boxes[torch.from_numpy(keep).to(boxes.device)]


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each (x1, y1, x2, y2, ...) box to a square around its centre (MTCNN's `rerec`)."""
    boxes = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply R/O-Net offsets (K, 4), in units of the inclusive box size (w = x2 - x1 + 1)."""
    boxes = boxes.clone()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] = boxes[:, :4] + offsets * torch.stack([w, h, w, h], dim=1)
    return boxes


def _crops(img: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut boxes out of img (1, 3, H, W), area-resize each to size x size and normalise.

    Like facenet-pytorch, boxes are truncated to integers and clipped to the image (no zero
    padding), and the crop starts one pixel before (x1, y1), a relic of MATLAB's 1-based indices.
    Returns (K', 3, size, size) in [-1, 1] and the mask (K,) of boxes that gave a non-empty crop.
    """
    h, w = img.shape[2:]
    ib = boxes[:, :4].trunc().int().cpu().numpy()
    x, y = np.maximum(ib[:, 0], 1), np.maximum(ib[:, 1], 1)
    ex, ey = np.minimum(ib[:, 2], w), np.minimum(ib[:, 3], h)
    valid = (ey > y - 1) & (ex > x - 1)
    out = [F.interpolate(img[:, :, y[k] - 1:ey[k], x[k] - 1:ex[k]], size=(size, size), mode="area")
           for k in np.flatnonzero(valid)]
    crops = torch.cat(out) if out else img.new_zeros((0, 3, size, size))
    return (crops - 127.5) * 0.0078125, torch.from_numpy(valid).to(boxes.device)


class MTCNNDetector:
    """MTCNN face detector returning RetinaFace-style rows (box, score, 5 landmarks).

    min_face_size: smallest face (px) the pyramid looks for; thresholds: P/R/O-Net score cut-offs;
    factor: scale step of the image pyramid; conf_threshold: the final score a face needs (the
    default of :meth:`detect`); min_face: faces whose box's shorter side is below this many pixels
    are dropped (0: none), and the pyramid starts there unless ``min_face_size`` is given.
    """

    def __init__(self, device: str | torch.device = "cpu", min_face_size: int | None = None,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 factor: float = 0.709, *, conf_threshold: float = 0.97, min_face: int = 0) -> None:
        self.device = torch.device(device)
        if min_face_size is None:
            # A larger minimum face means a shorter pyramid (faster); a smaller one, a longer one.
            min_face_size = max(int(min_face), 8) if min_face else 20
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.factor = factor
        self.conf_threshold = conf_threshold
        self.min_face = min_face
        self.source = str(resources.files("facerestore") / "data" / WEIGHTS_FILE)
        self.nets = MTCNN()
        self.nets.load_state_dict(mtcnn_state_dict(), strict=True)
        self.nets.eval().to(self.device)

    @torch.inference_mode()
    def detect(self, img: np.ndarray, conf_threshold: float | None = None) -> np.ndarray:
        """Detect faces in a BGR uint8 image (H, W, 3) as cv2.imread gives it.

        Returns float32 (N, 15), best score first: x1, y1, x2, y2, score, then (x, y) of the
        image-left eye, image-right eye, nose tip, mouth left, mouth right. Only faces whose
        O-Net score is >= conf_threshold (default: the detector's, 0.97) are kept.
        """
        if conf_threshold is None:
            conf_threshold = self.conf_threshold
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if img.ndim != 3 or img.shape[2] not in (3, 4):
            raise ValueError(f"expected a BGR image (H, W, 3), got shape {img.shape}")
        rgb = np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, as the nets were trained
        x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].float()  # (1, 3, H, W)

        boxes = self._propose(x)
        if len(boxes):
            boxes = self._refine(x, boxes)
        if len(boxes) == 0:
            return np.zeros((0, 15), np.float32)
        faces = self._output(x, boxes)
        faces = faces[faces[:, 4] >= conf_threshold]
        return drop_small(faces.cpu().numpy().astype(np.float32), self.min_face)

    def _scales(self, h: int, w: int) -> list[float]:
        """Pyramid scales: a min_face_size face maps to P-Net's 12 px window, down to 12 px total."""
        scale = 12.0 / self.min_face_size
        shortest = min(h, w) * scale
        scales = []
        while shortest >= 12:
            scales.append(scale)
            scale *= self.factor
            shortest *= self.factor
        return scales

    def _propose(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 1, P-Net over the pyramid -> square candidate boxes (K, 5): x1, y1, x2, y2, score."""
        h, w = x.shape[2:]
        per_scale = []
        for scale in self._scales(h, w):
            small = F.interpolate(x, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
            prob, offsets = self.nets.pnet((small - 127.5) * 0.0078125)  # (1, h', w'), (1, 4, h', w')
            cells = torch.nonzero(prob[0] >= self.thresholds[0])  # (K, 2) as (row, col)
            xy = cells.flip(1).to(x.dtype)
            # Each output cell sees a 12x12 window at stride 2 of the scaled image.
            top_left = ((2 * xy + 1) / scale).floor()
            bottom_right = ((2 * xy + 12) / scale).floor()
            score = prob[0][cells[:, 0], cells[:, 1]]
            reg = offsets[0][:, cells[:, 0], cells[:, 1]].T  # (K, 4)
            cand = torch.cat([top_left, bottom_right, score[:, None], reg], dim=1)  # (K, 9)
            per_scale.append(_nms_t(cand, 0.5))
        if not per_scale:  # image smaller than min_face_size
            return x.new_zeros((0, 5))
        boxes = _nms_t(torch.cat(per_scale), 0.7)
        # Stage-1 offsets are in units of the exclusive size (x2 - x1), unlike stages 2 and 3.
        wh = (boxes[:, 2:4] - boxes[:, 0:2]).repeat(1, 2)
        return _square(torch.cat([boxes[:, :4] + boxes[:, 5:9] * wh, boxes[:, 4:5]], dim=1))

    def _refine(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 2, R-Net on 24x24 crops -> fewer, better square boxes (K', 5)."""
        crops, valid = _crops(x, boxes, 24)
        prob, offsets = self.nets.rnet(crops)
        boxes = boxes[valid]
        keep = prob > self.thresholds[1]
        boxes = torch.cat([boxes[keep, :4], prob[keep, None], offsets[keep]], dim=1)  # (K', 9)
        boxes = _nms_t(boxes, 0.7)
        return _square(_regress(boxes[:, :5], boxes[:, 5:9]))

    def _output(self, x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Stage 3, O-Net on 48x48 crops -> (N, 15) final boxes, scores and landmarks."""
        crops, valid = _crops(x, boxes, 48)
        prob, offsets, marks = self.nets.onet(crops)
        boxes = boxes[valid]
        # A --det-threshold below O-Net's own cut-off lowers it too, so it can find more faces.
        keep = prob > min(self.thresholds[2], self.conf_threshold)
        boxes, offsets, marks = boxes[keep, :4], offsets[keep], marks[keep]
        # Landmarks are fractions of the (inclusive) crop, which starts at (x1 - 1, y1 - 1).
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1  # (N, 2) as (w, h)
        pts_x = size[:, :1] * marks[:, :5] + boxes[:, :1] - 1
        pts_y = size[:, 1:] * marks[:, 5:] + boxes[:, 1:2] - 1
        points = torch.stack([pts_x, pts_y], dim=2).flatten(1)  # (N, 10) as x0, y0, x1, y1, ...
        faces = torch.cat([_regress(torch.cat([boxes, prob[keep, None]], 1), offsets), points], 1)
        return _nms_t(faces, 0.7, mode="min", pixel_inclusive=True)
