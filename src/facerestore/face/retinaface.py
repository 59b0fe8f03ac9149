"""RetinaFace face detection on a BGR image: pre-processing, prior boxes, decoding and NMS.

Reproduces facexlib's ``RetinaFace.detect_faces``. The network itself is
:class:`facerestore.archs.retinaface.RetinaFace`; everything after the forward pass is the pure
function :func:`postprocess`, so it can be tested on synthetic network outputs.

Detections are rows of 15 float32 numbers (facexlib's layout):
    x1, y1, x2, y2, score, then (x, y) of: image-left eye, image-right eye, nose tip,
    mouth corner on the image left, mouth corner on the image right.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from facerestore.archs.retinaface import RetinaFace
from facerestore.face.nms import nms
from facerestore.face.sanity import drop_small

# Anchor layout and box coding shared by both released networks (facexlib's cfg_mnet / cfg_re50).
MIN_SIZES: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))  # pixels, per level
STEPS: tuple[int, ...] = (8, 16, 32)  # feature stride of each pyramid level
VARIANCES: tuple[float, float] = (0.1, 0.2)  # centre and log-size scaling of the regressions
MEAN_BGR: tuple[float, float, float] = (104.0, 117.0, 123.0)
TARGET_SIZE, MAX_SIZE = 1600, 2150  # only used when use_origin_size=False


def prior_boxes(height: int, width: int, min_sizes: tuple[tuple[int, ...], ...] = MIN_SIZES,
                steps: tuple[int, ...] = STEPS) -> torch.Tensor:
    """Anchors (P, 4) as (cx, cy, w, h), normalised by the image width / height.

    Order: level, then row i, column j, then min size: the order the heads' outputs are flattened.
    Centres are ((j + 0.5) * step / width, (i + 0.5) * step / height) on a ceil(H/step) x ceil(W/step)
    grid. Computed in float64 and rounded once to float32, as facexlib builds them from Python floats.
    """
    levels = []
    for sizes, step in zip(min_sizes, steps, strict=True):
        rows, cols = -(-height // step), -(-width // step)  # ceil division
        cx = (np.arange(cols, dtype=np.float64) + 0.5) * step / width
        cy = (np.arange(rows, dtype=np.float64) + 0.5) * step / height
        cy, cx = np.meshgrid(cy, cx, indexing="ij")  # (rows, cols)
        n = len(sizes)
        anchors = np.empty((rows, cols, n, 4), dtype=np.float64)
        anchors[..., 0] = cx[..., None]
        anchors[..., 1] = cy[..., None]
        anchors[..., 2] = np.asarray(sizes, dtype=np.float64) / width
        anchors[..., 3] = np.asarray(sizes, dtype=np.float64) / height
        levels.append(anchors.reshape(-1, 4))
    return torch.from_numpy(np.concatenate(levels).astype(np.float32))


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor,
                 variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """(P, 4) regressions -> (P, 4) corners (x1, y1, x2, y2), normalised like the priors.

    centre = prior_centre + loc_xy * v0 * prior_size; size = prior_size * exp(loc_wh * v1).
    """
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    top_left = centre - size / 2
    return torch.cat([top_left, top_left + size], dim=1)


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor,
                     variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """(P, 10) regressions -> (P, 10) points (x0, y0, ..., x4, y4), normalised like the priors."""
    offsets = pre.reshape(-1, 5, 2) * variances[0] * priors[:, None, 2:]
    return (priors[:, None, :2] + offsets).reshape(-1, 10)


def postprocess(loc: torch.Tensor, conf: torch.Tensor, landmarks: torch.Tensor, input_hw: tuple[int, int],
                resize: float = 1.0, conf_threshold: float = 0.97, nms_threshold: float = 0.4) -> np.ndarray:
    """Raw outputs of one image -> (N, 15) float32 detections in original-image pixels.

    loc (P, 4), conf (P, 2) softmax, landmarks (P, 10) for a network input of size input_hw
    (the possibly resized image); ``resize`` is that input's scale relative to the original.
    Keeps scores > conf_threshold, sorts by score, then NMS. facexlib applies no top-k here.
    """
    height, width = input_hw
    priors = prior_boxes(height, width).to(loc.device)
    scale = torch.tensor([width, height], dtype=torch.float32, device=loc.device)
    boxes = decode_boxes(loc.float(), priors) * scale.repeat(2) / resize
    points = decode_landmarks(landmarks.float(), priors) * scale.repeat(5) / resize
    boxes, points = boxes.cpu().numpy(), points.cpu().numpy()
    scores = conf[:, 1].float().cpu().numpy()

    inds = np.where(scores > conf_threshold)[0]
    order = inds[scores[inds].argsort()[::-1]]  # facexlib's order (ties as numpy leaves them)
    dets = np.hstack([boxes[order], scores[order, None]]).astype(np.float32)
    keep = nms(dets[:, :4], dets[:, 4], nms_threshold)
    return np.concatenate([dets[keep], points[order][keep]], axis=1).astype(np.float32)


def resize_factor(height: int, width: int, target_size: int = TARGET_SIZE, max_size: int = MAX_SIZE) -> float:
    """facexlib's optional test scale: short side to target_size unless the long side passes max_size."""
    resize = target_size / min(height, width)
    if np.round(resize * max(height, width)) > max_size:
        resize = max_size / max(height, width)
    return resize


class RetinaFaceDetector:
    """Runs a :class:`RetinaFace` network on BGR images like facexlib's ``detect_faces``.

    The network is moved to ``device`` and put in eval mode. ``conf_threshold`` is the score a
    face needs by default; faces whose box's shorter side is under ``min_face`` pixels are dropped.
    """

    def __init__(self, net: RetinaFace, device: str | torch.device = "cpu", *, conf_threshold: float = 0.97,
                 min_face: int = 0, source: str = "module") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.conf_threshold = conf_threshold
        self.min_face = min_face
        self.source = source

    @torch.no_grad()
    def detect(self, img: np.ndarray, conf_threshold: float | None = None, nms_threshold: float = 0.4,
               use_origin_size: bool = True) -> np.ndarray:
        """img (H, W, 3) BGR (uint8 or float) -> (N, 15) float32 detections, best first.

        ``use_origin_size=True`` (facexlib's default, and what FaceRestoreHelper uses) runs the
        network at the image's own size; False first rescales it by :func:`resize_factor`.
        ``conf_threshold`` defaults to the detector's (0.97, facexlib's).
        """
        if conf_threshold is None:
            conf_threshold = self.conf_threshold
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR image, got shape {img.shape}")
        image = img.astype(np.float32)
        resize = 1.0 if use_origin_size else resize_factor(*image.shape[:2])
        if resize != 1:
            image = cv2.resize(image, None, None, fx=resize, fy=resize, interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(image.transpose(2, 0, 1)).unsqueeze(0).to(self.device)  # (1, 3, H, W)
        x = x - torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)
        loc, conf, landmarks = self.net(x)
        dets = postprocess(loc[0], conf[0], landmarks[0], image.shape[:2], resize, conf_threshold, nms_threshold)
        return drop_small(dets, self.min_face)
