"""Whole-photo face restoration: detect → align → restore → blend → paste back.

``Restorer`` is the library behind ``facerestore restore``; it does the job of the official
``GFPGANer`` with the geometry of facexlib's ``FaceRestoreHelper``, and adds what users asked
for: a ``weight`` that works, reproducible noise, batched faces, user-given landmarks, and
grey / alpha / 16-bit images coming back as they went in.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from ..face import align
from ..face.detectors import FaceDetector, load_detector
from ..face.sanity import drop_small, split_plausible
from ..models.descriptor import Purpose
from ..models.loading import load

if TYPE_CHECKING:  # pragma: no cover
    from .video import VideoSummary
    from .options import RestoreOptions

FACE_SIZE = 512  # the official face size; a model built for another size gets crops of its own size
# Channels closer than this (in 8-bit levels) are one grey image stored as colour (a scanned
# print saved as RGB JPEG); such photos come back grey like true single-channel ones.
_GREY_TOLERANCE = 2


def _as_bgr8(img: np.ndarray) -> np.ndarray:
    """Any supported image → 3-channel BGR uint8 (what detectors and face networks take)."""
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img[:, :, :3])


def is_grey(img: np.ndarray) -> bool:
    """True for single-channel images and for colour images whose channels are all (nearly) equal."""
    if img.ndim == 2 or img.shape[2] == 1:
        return True
    tolerance = _GREY_TOLERANCE * (257 if img.dtype == np.uint16 else 1)
    # absdiff in the image's own dtype: no full-size int32 copies of a large photo.
    b, g, r = (np.ascontiguousarray(img[:, :, i]) for i in range(3))
    return bool(cv2.absdiff(b, g).max() <= tolerance and cv2.absdiff(g, r).max() <= tolerance)


def check_weight(weight: object) -> float:
    """``weight`` as a float in [0, 1], or a ValueError that says what is wrong."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.floating, np.integer)):
        raise ValueError(f"weight must be a number between 0 and 1, got {weight!r}")
    if not 0 <= float(weight) <= 1:  # also refuses nan
        raise ValueError(f"weight must be between 0 and 1, got {weight}")
    return float(weight)


def landmark_batch(landmarks: object) -> np.ndarray:
    """User landmarks as ``(N, 5, 2)`` float32: one ``(5, 2)`` array (x, y per row, RetinaFace
    order), a list of them, or an ``(N, 5, 2)`` array. Anything else is refused, never reshaped:
    a transposed ``(2, 5)`` array or ten points in one array would give wrong crops silently."""
    try:
        points = np.asarray(landmarks, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"landmarks must be (5, 2) arrays of (x, y) points: {exc}") from None
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[1:] != (5, 2):
        hint = " (transposed? give one (x, y) row per point)" if points.shape[-2:] == (2, 5) else ""
        raise ValueError(f"landmarks must be (5, 2) per face — eyes, nose, mouth corners as (x, y) rows — "
                         f"or (N, 5, 2); got shape {tuple(np.shape(landmarks))}{hint}")
    if not np.isfinite(points).all():
        raise ValueError("landmarks contain nan or inf")
    return points


def _check_image(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray):
        raise TypeError(f"expected a numpy image (as cv2.imread gives), got {type(img).__name__}")
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected a uint8 or uint16 image, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (1, 3, 4))):
        raise ValueError(f"expected an H×W, H×W×3 or H×W×4 image, got shape {img.shape}")
    if min(img.shape[:2]) < 2:
        raise ValueError(f"image too small: {img.shape[1]}×{img.shape[0]}")


@dataclass
class FaceRecord:
    """What was done to one face, for reports and front-ends. Coordinates are input-image pixels.

    ``box``/``score`` are the detector's (``None`` for user landmarks and aligned inputs);
    ``identity`` is the cosine similarity of ArcFace embeddings of the input face and the face
    as delivered (after colour match and blend), ``None`` without an identity model; ``weight``
    is the blend weight actually used (lower than asked when ``min_identity`` stepped in).
    """

    index: int
    box: list[float] | None = None
    score: float | None = None
    landmarks: list[list[float]] | None = None
    identity: float | None = None
    weight: float = 0.5
    color_matched: bool = False
    notes: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)  # filled by the batch: folder -> file


@dataclass
class RestoreResult:
    """Everything :meth:`Restorer.restore` made of one image.

    ``cropped``/``restored``/``image`` are what :meth:`Restorer.enhance` returns; ``faces`` has
    one :class:`FaceRecord` per restored face, in the same order; ``notes`` says what was
    dropped or changed (implausible detections, faces kept under ``min_identity``).
    """

    cropped: list[np.ndarray]
    restored: list[np.ndarray]
    image: np.ndarray | None
    faces: list[FaceRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Prepared:
    """One image after detection and alignment, waiting for the face network."""

    img: np.ndarray
    cropped: list[np.ndarray]
    affines: list[np.ndarray] = field(default_factory=list)
    points: np.ndarray | None = None
    dets: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    aligned: bool = False


# Weights tried, as fractions of the asked one, when identity_fallback="lower"; 0 is the input face.
_LOWER_WEIGHT_STEPS = (0.75, 0.5, 0.25, 0.0)


class Restorer:
    """Restores every face of a photo and pastes it back into an upscaled background.

    Args:
        model: the face network: a zoo name (``v1``, ``v1.2``, ``v1.3``, ``v1.4``,
            ``RestoreFormer``), a weights file, or a loaded module.
        upscale: scale of the output image relative to the input (any float ≥ 1).
        bg_upsampler: ``None`` for a Lanczos resize of the background, or a Real-ESRGAN model
            (zoo name such as ``realesrgan-x2plus``, weights file, loaded module, or an
            :class:`~facerestore.pipeline.upsampler.Upsampler`).
        bg_tile: tile size for the background upsampler (0 = whole image at once).
        detector: ``auto`` (RetinaFace if its weights are present, else the built-in MTCNN),
            ``mtcnn``, ``retinaface-resnet50``, ``retinaface-mobilenet0.25``, a file or a module.
        parser: ``parsenet`` (zoo name), a weights file or module for the ParseNet face mask
            used when pasting, or ``None`` for the soft square mask. If the default ParseNet
            weights are unavailable the square mask is used, with a warning.
        device: torch device for every network.
        seed: ``None`` uses the model's stored StyleGAN noise (deterministic, the default);
            an integer draws fresh noise from that seed, the same for every call.
        batch_size: faces restored per network call (faces of one photo, and of several photos
            in :func:`~facerestore.pipeline.batch.run_batch`); by default sized by the free
            memory on CUDA/MPS (:func:`auto_batch_size`, at most 16) and 1 on CPU, where batching
            measured slower per face (``benchmarks/bench_forward.py``, GFPGANv1Clean_b4).
        half: run the face network in half precision: fp16 on CUDA, bf16 on CPU and MPS. The
            style normalisation and demodulation sums stay fp32 (fp16 overflows there); the
            output differs from fp32 by up to a few grey levels. Face parsing, detection and the
            background upsampler stay fp32. Off by default (fp32 gives the official pixels).
        eye_dist_threshold: faces whose eyes are closer than this (pixels) are skipped.
        keep_grey: grey input comes back grey (set False to keep the network's colours).
        allow_download: fetch missing zoo weights on first use.
        color_match: give each restored face the Lab mean/std of its input face (inside a face
            ellipse) before the blend; off by default, which gives the official pixels.
        identity: an ArcFace network for identity scores (zoo name ``arcface-resnet18``, a file,
            a module), ``"auto"`` (ArcFace if its weights are on disk, else one warning), or
            ``None`` (no scores, the default).
        min_identity: faces whose identity score falls below this keep the input face
            (``identity_fallback="input"``) or the highest lower weight that reaches it
            (``"lower"``: 3/4, 1/2, 1/4 of ``weight``, then the input face).
        det_threshold: the detector score a face needs (``None``: the detector's, 0.97).
        min_face: faces whose box's shorter side is under this many pixels are skipped.
        landmark_check: skip detections whose five landmarks cannot be a face (an eye detected
            as a face), see :mod:`facerestore.face.sanity`; each one is named in the notes.
    """

    def __init__(self, model: str | Path | nn.Module = "v1.4", upscale: float = 2,
                 bg_upsampler: str | Path | nn.Module | None = None, bg_tile: int = 400,
                 detector: str | Path | nn.Module | FaceDetector = "auto",
                 parser: str | Path | nn.Module | None = "parsenet", device: str | torch.device = "cpu", *,
                 seed: int | None = None, batch_size: int | None = None, eye_dist_threshold: float = 5,
                 keep_grey: bool = True, allow_download: bool = True, color_match: bool = False,
                 identity: str | Path | nn.Module | None = None, min_identity: float | None = None,
                 identity_fallback: str = "input", det_threshold: float | None = None,
                 min_face: int | None = None, landmark_check: bool = True, half: bool = False,
                 backend: str | None = None) -> None:
        if upscale < 1:
            raise ValueError(f"upscale must be >= 1, got {upscale}")
        self.device = torch.device(device)
        self.upscale = upscale
        self.seed = seed
        self.dtype = half_dtype(self.device) if half else torch.float32
        self.eye_dist_threshold = eye_dist_threshold
        self.keep_grey = keep_grey
        self.color_match = bool(color_match)
        self.det_threshold = det_threshold
        self.min_face = min_face
        self.landmark_check = landmark_check
        if identity_fallback not in ("input", "lower"):
            raise ValueError(f"identity_fallback must be 'input' or 'lower', got {identity_fallback!r}")
        self.min_identity = min_identity
        self.identity_fallback = identity_fallback
        face = load(model, self.device, allow_download=allow_download, purpose=Purpose.FACE_RESTORATION,
                    role="the face model (--model)")
        self.net, self.descriptor = face.model, face.descriptor
        self.face_size = face.descriptor.input_size or FACE_SIZE
        if half and not face.descriptor.half_safe:
            warnings.warn(f"{face.descriptor} is not known to be safe in half precision; it runs in fp32",
                          stacklevel=2)
            half, self.dtype = False, torch.float32
        if half:
            self.net = _to_half(self.net, self.dtype)
        self.batch_size = (max(1, int(batch_size)) if batch_size is not None
                           else auto_batch_size(self.device, self.dtype, self.face_size))
        self.model_files = {"model": face.source}
        self.detector = (detector if hasattr(detector, "detect") and not isinstance(detector, nn.Module)
                         else load_detector(detector, self.device, allow_download=allow_download,
                                            conf_threshold=det_threshold, min_face=min_face))
        self.model_files["detector"] = getattr(self.detector, "source", "module")
        from .identity import load_identity_scorer

        self.identity = load_identity_scorer(identity, self.device, allow_download=allow_download,
                                             needed=min_identity is not None)
        if self.identity is not None:
            self.model_files["identity"] = self.identity.source
        elif min_identity is not None:
            warnings.warn("--min-identity is not applied: there are no identity scores", stacklevel=2)
        self.parser = self._load_parser(parser, allow_download)
        self.upsampler = self._load_upsampler(bg_upsampler, bg_tile, allow_download)
        self.use_engines(backend)

    @classmethod
    def from_options(cls, options: "RestoreOptions") -> "Restorer":
        """The Restorer a run's options describe (validated first). Notes about choices made
        (a background resized instead of upsampled, a missing ParseNet) are issued as warnings."""
        options.validate()
        model = options.model
        # Aligned faces are neither pasted nor upscaled as a background (as the official): loading
        # the parser or the upsampler would only cost time and print notes about them.
        return cls(model=model, upscale=options.upscale,
                   bg_upsampler=None if options.aligned else resolve_bg_upsampler(
                       options.bg_upsampler, options.device, options.allow_download),
                   bg_tile=options.bg_tile, detector=options.detector,
                   parser=None if options.aligned else options.parser,
                   device=options.device, seed=options.seed, batch_size=options.batch_size,
                   eye_dist_threshold=options.eye_dist_threshold, keep_grey=options.keep_grey,
                   allow_download=options.allow_download, color_match=options.color_match,
                   identity=options.identity_model, min_identity=options.min_identity,
                   identity_fallback=options.identity_fallback, det_threshold=options.det_threshold,
                   min_face=options.min_face, landmark_check=options.landmark_check, half=options.half,
                   backend=options.backend)

    def use_engines(self, backend: str | None) -> None:
        """Put every loaded network on the engine ``backend`` names (``auto``: the fastest
        installed for each network on this device; ``None``/``torch``: PyTorch, as loaded). The
        engines give PyTorch's output (facerestore.engines); what they cannot run exactly stays on
        PyTorch with a note. MTCNN stays on PyTorch (its nets are small)."""
        if backend is None or backend == "torch":
            return
        from ..archs.retinaface import RetinaFace
        from ..engines import wrap

        self.net = wrap(self.net, self.descriptor, backend, self.device, half=self.dtype != torch.float32)
        if self.parser is not None:
            self.parser = wrap(self.parser, None, backend, self.device)
        if self.upsampler is not None and isinstance(self.upsampler.model, nn.Module):
            self.upsampler.model = wrap(self.upsampler.model, None, backend, self.device)
        if isinstance(getattr(self.detector, "net", None), RetinaFace):
            self.detector.net = wrap(self.detector.net, None, backend, self.device)
        if self.identity is not None:
            self.identity.net = wrap(self.identity.net, None, backend, self.device)

    def _load_parser(self, parser, allow_download: bool) -> nn.Module | None:
        if parser is None or (isinstance(parser, str) and parser.lower() == "none"):
            return None
        from ..models.zoo import ModelUnavailableError

        try:
            loaded = load(parser, self.device, allow_download=allow_download, purpose=Purpose.FACE_PARSING,
                          role="the face parser (--parser)")
            self.model_files["parser"] = loaded.source
            return loaded.model
        except ModelUnavailableError as exc:
            if not (isinstance(parser, str) and parser.lower() == "parsenet"):
                raise
            warnings.warn("faces are pasted with the soft square mask because the ParseNet weights are "
                          "unavailable: " + " ".join(str(exc).split("\n")), stacklevel=3)
            return None

    def _load_upsampler(self, bg_upsampler, bg_tile: int, allow_download: bool):
        from .upsampler import Upsampler

        if bg_upsampler is None or isinstance(bg_upsampler, Upsampler):
            return bg_upsampler
        if isinstance(bg_upsampler, str) and bg_upsampler.lower() == "none":
            return None
        loaded = load(bg_upsampler, self.device, allow_download=allow_download, purpose=Purpose.UPSCALING,
                      role="the background upsampler (--bg_upsampler)")
        self.model_files["bg_upsampler"] = loaded.source
        net = loaded.model
        # The default tile_pad (24) keeps tiles within 1 grey level of the untiled result;
        # the official 10 leaves visible seams.
        return Upsampler(net, tile=bg_tile, device=self.device)

    # ------------------------------------------------------------------ the steps

    def detect_landmarks(self, img_bgr8: np.ndarray, only_center_face: bool = False) -> np.ndarray:
        """``(N, 5, 2)`` landmarks of the faces to restore, as the official helper selects them."""
        return align.landmarks_from_detections(self.detect_faces(img_bgr8, only_center_face)[0])

    def detect_faces(self, img_bgr8: np.ndarray, only_center_face: bool = False,
                     ) -> tuple[np.ndarray, list[str]]:
        """``(K, 15)`` detections of the faces to restore (box, score, landmarks) and notes on
        the ones dropped as implausible. The score and size settings are applied here too, so
        that they hold for any detector object, not only the built-in ones."""
        if self.det_threshold is None:
            dets = self.detector.detect(img_bgr8)
        else:
            dets = self.detector.detect(img_bgr8, conf_threshold=self.det_threshold)
        dets = np.asarray(dets, np.float32).reshape(-1, 15)
        if self.det_threshold is not None:
            dets = dets[dets[:, 4] >= self.det_threshold]
        dets = drop_small(dets, self.min_face)
        notes = []
        if self.landmark_check:
            dets, dropped = split_plausible(dets)
            for row, reason in dropped:
                x1, y1, x2, y2 = (round(float(v)) for v in row[:4])
                notes.append(f"skipped a detection at ({x1}, {y1})-({x2}, {y2}), score {row[4]:.2f}: {reason}")
        dets = align.select_faces(dets, img_bgr8.shape, eye_dist_threshold=self.eye_dist_threshold,
                                  only_center_face=only_center_face)
        return dets, notes

    @torch.inference_mode()
    def restore_faces(self, faces: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Aligned 512×512 BGR uint8 faces → restored BGR uint8 faces, in batches."""
        restored: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            # Divide in float64 before going to float32, as the official img2tensor does: the
            # float32 quotient differs in the last bit for some levels, enough to flip a rounding.
            chunk = (np.stack(faces[start:start + self.batch_size]) / 255.0).astype(np.float32)
            # Contiguous NCHW: a channels-last input sends convolutions down another oneDNN path
            # whose sums differ in the last bits from the official ones.
            x = torch.from_numpy(chunk[..., ::-1].copy()).permute(0, 3, 1, 2).contiguous().to(self.device)
            x = ((x - 0.5) / 0.5).to(self.dtype)
            y = self._forward(x).float().clamp_(-1, 1)
            y = ((y + 1) / 2 * 255.0).round().permute(0, 2, 3, 1).cpu().numpy()[..., ::-1]  # (B,H,W,3) BGR
            restored.extend(np.ascontiguousarray(face).astype(np.uint8) for face in y)
        return restored

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.descriptor.takes_noise:  # RestoreFormer: no noise inputs
            return self.net(x)[0]
        if self.seed is None:
            return self.net(x, return_rgb=False, randomize_noise=False)[0]
        # Fresh noise, reproducibly, without touching the caller's global RNG state.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return self.net(x, return_rgb=False, randomize_noise=True)[0]

    @staticmethod
    def blend(restored: np.ndarray, original: np.ndarray, weight: float) -> np.ndarray:
        """``weight`` · restored + (1 − ``weight``) · original, rounded to uint8."""
        if weight >= 1:
            return restored
        if weight <= 0:
            return original.copy()
        mixed = weight * restored.astype(np.float32) + (1 - weight) * original.astype(np.float32)
        return np.clip(mixed.round(), 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------ the whole photo

    def enhance(self, img: np.ndarray, has_aligned: bool = False, only_center_face: bool = False,
                paste_back: bool = True, weight: float = 0.5,
                landmarks: Sequence[np.ndarray] | None = None,
                ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
        """Restore the faces of one image (BGR as OpenCV reads it; grey, BGRA and 16-bit too).

        Returns ``(cropped_faces, restored_faces, restored_img)`` like ``GFPGANer.enhance``:
        the aligned 512×512 input faces, the restored faces (BGR uint8), and the whole image
        at ``upscale`` with the faces pasted back, in the input's kind (grey stays grey, alpha
        is kept and upscaled, 16-bit stays 16-bit); ``None`` when ``has_aligned`` or not
        ``paste_back``. ``weight`` blends each restored face with its input face (0 = input,
        1 = fully restored, the official output). ``landmarks``: a list of 5×2 arrays in
        RetinaFace order; when given, detection is skipped. :meth:`restore` gives the same
        with a record of each face (box, score, landmarks, identity score, weight used).
        """
        result = self.restore(img, has_aligned=has_aligned, only_center_face=only_center_face,
                              paste_back=paste_back, weight=weight, landmarks=landmarks)
        return result.cropped, result.restored, result.image

    def restore(self, img: np.ndarray, has_aligned: bool = False, only_center_face: bool = False,
                paste_back: bool = True, weight: float = 0.5,
                landmarks: Sequence[np.ndarray] | None = None) -> RestoreResult:
        """:meth:`enhance`, returning a :class:`RestoreResult` with per-face records and notes."""
        return self.restore_many([img], has_aligned=has_aligned, only_center_face=only_center_face,
                                 paste_back=paste_back, weight=weight,
                                 landmarks=None if landmarks is None else [landmarks])[0]

    def restore_many(self, images: Sequence[np.ndarray], has_aligned: bool = False, only_center_face: bool = False,
                     paste_back: bool = True, weight: float = 0.5,
                     landmarks: Sequence[Sequence[np.ndarray] | None] | None = None) -> list[RestoreResult]:
        """:meth:`restore` for several images, their faces sent through the network together
        (``batch_size`` per call: on a GPU a batch of faces costs little more than one).
        ``landmarks``: ``None``, or one entry per image (``None`` there detects). Each result
        equals what :meth:`restore` gives for that image with the same batch size."""
        weight = check_weight(weight)
        landmarks = [None] * len(images) if landmarks is None else list(landmarks)
        if len(landmarks) != len(images):
            raise ValueError(f"{len(images)} images but {len(landmarks)} landmark entries")
        prepared = [self._prepare(img, has_aligned, only_center_face, lms) for img, lms in zip(images, landmarks)]
        raw_all = self.restore_faces([crop for p in prepared for crop in p.cropped])
        results, taken = [], 0
        for p in prepared:
            raw = raw_all[taken:taken + len(p.cropped)]
            taken += len(p.cropped)
            restored, records = self._restore_crops(p.cropped, weight, p.notes, raw=raw)
            if p.aligned:
                results.append(RestoreResult(p.cropped, restored, None, records, p.notes))
                continue
            for i, record in enumerate(records):
                record.landmarks = np.asarray(p.points[i], np.float64).round(2).tolist()
                if p.dets is not None:
                    record.box = np.asarray(p.dets[i, :4], np.float64).round(2).tolist()
                    record.score = round(float(p.dets[i, 4]), 6)
            image = self.paste_back(p.img, restored, p.affines) if paste_back else None
            results.append(RestoreResult(p.cropped, restored, image, records, p.notes))
        return results

    def _prepare(self, img: np.ndarray, has_aligned: bool, only_center_face: bool,
                 landmarks: Sequence[np.ndarray] | None) -> "_Prepared":
        """Checks, detection and alignment: everything before the face network."""
        _check_image(img)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]  # one grey layout from here on
        bgr8 = _as_bgr8(img)
        if has_aligned:
            # The official path: any aligned face is brought to the network's size.
            size = self.face_size
            return _Prepared(img, [cv2.resize(bgr8, (size, size), interpolation=cv2.INTER_LINEAR)], aligned=True)
        prepared = _Prepared(img, [])
        if landmarks is None:
            prepared.dets, found_notes = self.detect_faces(bgr8, only_center_face)
            prepared.notes.extend(found_notes)
            prepared.points = align.landmarks_from_detections(prepared.dets)
        else:
            prepared.points = landmark_batch(landmarks)
        # Crops come from the full-precision image (16-bit data keeps its precision until the net).
        source = align.prepare_input(img)
        crops, prepared.affines = align.align_faces(source, list(prepared.points), self.face_size)
        prepared.cropped = [np.clip(np.round(c), 0, 255).astype(np.uint8) if c.dtype != np.uint8 else c
                            for c in crops]
        return prepared

    def _restore_crops(self, cropped: list[np.ndarray], weight: float, notes: list[str],
                       raw: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], list[FaceRecord]]:
        """Network (unless its ``raw`` output is given), colour match, blend, identity score and
        the ``min_identity`` fallback."""
        if raw is None:
            raw = self.restore_faces(cropped)
        if self.color_match:
            from .colour import match_colour

            raw = [match_colour(r, c) for r, c in zip(raw, cropped)]
        restored = [self.blend(r, c, weight) for r, c in zip(raw, cropped)]
        records = [FaceRecord(i, weight=weight, color_matched=self.color_match) for i in range(len(cropped))]
        if self.identity is None or not cropped:
            return restored, records
        inputs = self.identity.embed(cropped)  # once: the fallback compares against them again
        scores = [float(np.clip(v, -1, 1)) for v in (inputs * self.identity.embed(restored)).sum(axis=1)]
        for i, score in enumerate(scores):
            records[i].identity = round(score, 6)
            if self.min_identity is None or score >= self.min_identity:
                continue
            steps = _LOWER_WEIGHT_STEPS if self.identity_fallback == "lower" else (0.0,)
            for fraction in steps:
                lower = weight * fraction
                face = self.blend(raw[i], cropped[i], lower)
                lower_score = float(np.clip(inputs[i] @ self.identity.embed([face])[0], -1, 1)) if lower > 0 else 1.0
                if lower_score >= self.min_identity or lower <= 0:
                    break
            restored[i] = face
            records[i].weight, records[i].identity = lower, round(lower_score, 6)
            outcome = "kept the input face" if lower <= 0 else f"used weight {lower:g} (identity {lower_score:.3f})"
            message = f"face {i}: identity {score:.3f} is below --min-identity {self.min_identity:g}; {outcome}"
            records[i].notes.append(message)
            notes.append(message)
        return restored, records

    # ------------------------------------------------------------------ video

    def enhance_video(self, src: str | Path, dst: str | Path, **options) -> "VideoSummary":
        """Restore every face of the video ``src`` into ``dst`` (faces tracked and steadied, frame
        timing and audio kept); see :func:`facerestore.pipeline.video.restore_video` for ``options``.
        Needs PyAV: ``pip install "facerestore[video]"``."""
        from .video import restore_video  # imported on use: it needs PyAV

        return restore_video(self, src, dst, **options)

    def paste_back(self, img: np.ndarray, restored: Sequence[np.ndarray],
                   affines: Sequence[np.ndarray]) -> np.ndarray:
        """Upscale the background and blend the restored faces into it, keeping the image's kind."""
        height, width = img.shape[:2]
        out_size = align.upscaled_size(height, width, self.upscale)
        if self.upsampler is not None:
            background = self.upsampler.enhance(img, outscale=self.upscale)
        else:
            background = img  # paste_faces resizes it with Lanczos, as the official helper does
        masks = None
        if self.parser is not None:
            masks = align.parse_face_masks(self.parser, restored, self.device, self.batch_size)
        inverse = [align.inverse_affine(a, self.upscale) for a in affines]
        out = align.paste_faces(background, list(restored), inverse, self.upscale, masks, out_size)
        if self.keep_grey and is_grey(img):
            grey = cv2.cvtColor(np.ascontiguousarray(out[:, :, :3]), cv2.COLOR_BGR2GRAY)
            if img.ndim == 2:
                return grey
            out = out.copy()
            out[:, :, 0] = out[:, :, 1] = out[:, :, 2] = grey  # stay 3-channel, as the input was
        return out


def half_dtype(device: torch.device) -> torch.dtype:
    """The half-precision type for ``device``: fp16 on CUDA (tensor cores), bf16 elsewhere
    (CPUs run fp16 slower than fp32; bf16 keeps fp32's range). A CPU without bf16 instructions
    would only emulate it, slower than fp32: there half precision is refused with a warning and
    fp32 is returned."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu":
        from ..engines.base import cpu_has_bf16

        if not cpu_has_bf16():
            warnings.warn("--half: this CPU has no bf16 instructions (AVX512-BF16 / AMX); running fp32",
                          stacklevel=3)
            return torch.float32
    return torch.bfloat16


def _to_half(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``facerestore.export.to_half`` where present (it checks the network keeps its unsafe
    reductions in fp32); otherwise a plain cast. fp32 (a CPU without bf16) leaves it as it is."""
    if dtype == torch.float32:
        return net
    try:
        from ..export import to_half
    except ImportError:
        return net.to(dtype)
    return to_half(net, dtype)


# Working memory of one face through GFPGANv1Clean at 512² in inference, fp32 (halved for
# fp16/bf16): an estimate with a margin (the U-Net's skip features at 512² and 256² are ~0.3 GiB),
# not yet measured on a GPU; benchmarks/bench_faces.py prints the measured MiB/face.
_BYTES_PER_FACE_512 = 1.0 * 2**30
_MAX_AUTO_BATCH = 16


def auto_batch_size(device: torch.device | str, dtype: torch.dtype = torch.float32, face_size: int = FACE_SIZE,
                    ) -> int:
    """Faces per network call when none is given: 1 on CPU (batching measured slower per face
    there); on CUDA as many as half the free memory holds, at most 16."""
    device = torch.device(device)
    if device.type != "cuda":
        return 1
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):  # no driver: let the first forward say so
        return 1
    per_face = _BYTES_PER_FACE_512 * (face_size / 512) ** 2 * (0.5 if dtype != torch.float32 else 1.0)
    return int(max(1, min(_MAX_AUTO_BATCH, free * 0.5 // per_face)))


def resolve_bg_upsampler(choice: object, device: str | torch.device, allow_download: bool) -> object:
    """What a background-upsampler option means. ``"realesrgan"`` behaves as the official CLI
    (Real-ESRGAN x2 on CUDA only, and only when its weights can be had; a Lanczos resize
    otherwise, with a warning); ``None``/``"none"`` resizes; a zoo name, file or module is used as
    given on any device."""
    if choice is None or (isinstance(choice, str) and choice.lower() == "none"):
        return None
    if not (isinstance(choice, str) and choice.lower() == "realesrgan"):
        return choice
    if torch.device(device).type != "cuda":
        warnings.warn("Real-ESRGAN is slow on CPU, so the background is resized instead "
                      "(ask for it anyway with --bg_upsampler realesrgan-x2plus)", stacklevel=2)
        return None
    from ..models import zoo

    entry = zoo.find_entry("realesrgan-x2plus")
    try:
        zoo.ensure_model_file(entry, allow_download=allow_download)
    except zoo.ModelUnavailableError as exc:
        warnings.warn(f"background resized instead of Real-ESRGAN: {str(exc).splitlines()[0]}", stacklevel=2)
        return None
    return entry.name  # by name, so loading checks it holds the zoo's architecture
