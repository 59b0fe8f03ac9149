"""Whole-photo face restoration: detect → align → restore → blend → paste back.

``Restorer`` is the library behind ``facerestore restore``; it does the job of the official
``GFPGANer`` with the geometry of facexlib's ``FaceRestoreHelper``, and adds what users asked
for: a ``weight`` that works, reproducible noise, batched faces, user-given landmarks, and
grey / alpha / 16-bit images coming back as they went in.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch import nn

from ..face import align
from ..face.detectors import load_detector
from ..face.sanity import drop_small, split_plausible
from ..io.images import convert_bit_depth, from_pipeline
from ..models.descriptor import Purpose
from ..models.loading import load
from .options import RestoreOptions, check_weight

if TYPE_CHECKING:  # pragma: no cover
    from .video import VideoSummary

FACE_SIZE = 512  # the official face size; a model built for another size gets crops of its own size


def _as_bgr8(img: np.ndarray) -> np.ndarray:
    """Any supported image → 3-channel BGR uint8 (what detectors and face networks take)."""
    img = convert_bit_depth(img, 8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img[:, :, :3])




def landmark_batch(landmarks: object) -> np.ndarray:
    """User landmarks as ``(N, 5, 2)`` float32: one ``(5, 2)`` array (x, y per row, RetinaFace
    order), a list of them, or an ``(N, 5, 2)`` array. Anything else is refused, never reshaped:
    a transposed ``(2, 5)`` array or ten points in one array would give wrong crops silently."""
    try:
        points = np.asarray(landmarks, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"landmarks must be (5, 2) arrays of (x, y) points: {exc}") from None
    given_shape = points.shape
    if points.ndim == 2:
        points = points[None]
    if points.ndim != 3 or points.shape[1:] != (5, 2):
        hint = " (transposed? give one (x, y) row per point)" if points.shape[-2:] == (2, 5) else ""
        raise ValueError(f"landmarks must be (5, 2) per face — eyes, nose, mouth corners as (x, y) rows — "
                         f"or (N, 5, 2); got shape {tuple(given_shape)}{hint}")
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
    # Milliseconds: "detect" (checks, detection, alignment) and "restore" (networks, blend, paste);
    # images restored together share the network's time equally.
    timings: dict[str, float] = field(default_factory=dict)


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

    Its one configuration is a :class:`~facerestore.pipeline.options.RestoreOptions`, given
    whole, as keyword overrides of its fields, or both::

        Restorer(options)                          # what a front-end filled and validated
        Restorer(model="v1.4", upscale=2)          # a Python caller: any RestoreOptions field
        Restorer(options, detector=my_detector)    # overrides win
        Restorer("v1.4")                           # a model alone may come first

    The options are validated (:class:`~facerestore.pipeline.options.OptionsError` names the bad
    one) before any network loads, and kept as ``restorer.options``. Fields that name networks
    (``model``, ``bg_upsampler``, ``detector``, ``parser``, ``identity_model``) also take loaded
    modules; ``detector`` a :class:`~facerestore.face.detectors.FaceDetector`, ``bg_upsampler`` an
    :class:`~facerestore.pipeline.upsampler.Upsampler`. Per-image settings (``weight``,
    ``only_center_face``, ``aligned``) are the defaults of :meth:`restore`, which may override
    them per call; :meth:`with_options` gives a copy sharing the networks with other such
    settings (``upscale``, ``color_match``, ...).

    Choices made while loading (a background resized instead of upsampled, no ParseNet weights,
    no identity scores) are collected in ``restorer.notes``, not issued as warnings; notes about
    one image (a detection skipped, a face kept under ``min_identity``) are in its result's notes.

    Settings, in short (see RestoreOptions for all): ``seed`` ``None`` uses the model's stored
    StyleGAN noise (deterministic), an integer draws fresh noise from that seed; ``batch_size``
    faces per network call, by default sized by free memory on CUDA (:func:`auto_batch_size`)
    and 1 on CPU, where batching measured slower per face; ``half`` runs the face network in fp16
    (CUDA) / bf16 (CPU, MPS), up to a few grey levels from fp32, which gives the official pixels;
    ``identity_model``/``min_identity``/``identity_fallback`` score each face with ArcFace and keep
    the input face (or the highest lower weight: 3/4, 1/2, 1/4 of ``weight``) below the threshold;
    ``det_threshold``, ``min_face`` and ``landmark_check`` decide which detections are faces;
    ``backend`` (default ``$FACERESTORE_BACKEND`` or ``auto``) puts every network on the fastest
    engine installed (:mod:`facerestore.engines`; each network within 1e-4 of PyTorch), and
    ``backend="torch"`` keeps the official pixels bit for bit.
    """

    # Settings that need no network loaded again: with_options may change them on a copy.
    _PER_CALL = frozenset({"upscale", "weight", "only_center_face", "aligned", "seed", "eye_dist_threshold",
                           "keep_grey", "color_match", "min_identity", "identity_fallback", "landmark_check",
                           "report", "suffix", "ext", "save_faces", "max_pixels", "max_output_pixels"})

    def __init__(self, options: RestoreOptions | None = None, /, **overrides: Any) -> None:
        if options is not None and not isinstance(options, RestoreOptions):
            # Restorer("v1.4"), Restorer(my_module): a model first, as the official GFPGANer takes it.
            if "model" in overrides:
                raise TypeError("Restorer() got a model twice: positionally and as model=")
            options, overrides = None, {"model": options, **overrides}
        options = (options if options is not None else RestoreOptions()).replace(**overrides).validate()
        self.options = options
        self.notes: list[str] = []
        self.device = torch.device(options.device)
        allow_download = options.allow_download
        half = options.half
        self.dtype = half_dtype(self.device, self.notes.append) if half else torch.float32
        face = load(options.model, self.device, allow_download=allow_download, purpose=Purpose.FACE_RESTORATION,
                    role="the face model (--model)")
        self.net, self.descriptor = face.model, face.descriptor
        self.face_size = face.descriptor.input_size or FACE_SIZE
        if half and not face.descriptor.half_safe:
            self.notes.append(f"{face.descriptor} is not known to be safe in half precision; it runs in fp32")
            half, self.dtype = False, torch.float32
        self.batch_size = (options.batch_size if options.batch_size is not None
                           else auto_batch_size(self.device, self.dtype, self.face_size))
        self.model_files = {"model": face.source}
        detector = options.detector
        self.detector = (detector if hasattr(detector, "detect") and not isinstance(detector, nn.Module)
                         else load_detector(detector, self.device, allow_download=allow_download,
                                            conf_threshold=options.det_threshold, min_face=options.min_face))
        self.model_files["detector"] = getattr(self.detector, "source", "module")
        from .identity import load_identity_scorer

        self.identity = load_identity_scorer(options.identity_model, self.device, allow_download=allow_download,
                                             needed=options.min_identity is not None, on_note=self.notes.append)
        if self.identity is not None:
            self.model_files["identity"] = self.identity.source
        elif options.min_identity is not None:
            self.notes.append("--min-identity is not applied: there are no identity scores")
        # Aligned faces are neither pasted nor upscaled as a background (as the official): loading
        # the parser or the upsampler would only cost time and give notes about them.
        self.parser = None if options.aligned else self._load_parser(options.parser, allow_download)
        self.upsampler = None if options.aligned else self._load_upsampler(
            resolve_bg_upsampler(options.bg_upsampler, self.device, allow_download, on_note=self.notes.append),
            options.bg_tile, allow_download)
        self.use_engines(options.backend, half)

    def use_engines(self, backend: str | None, half: bool = False) -> None:
        """Put every loaded network on the engine ``backend`` names (``auto``: the fastest
        installed for each network on this device; ``None``/``torch``: PyTorch, as loaded), and
        the face network in half precision when ``half``. The engines give PyTorch's output
        (facerestore.engines); what they cannot run exactly stays on PyTorch with a note. MTCNN
        stays on PyTorch (its nets are small). Engines export the fp32 network (OpenVINO runs it
        in bf16 itself), so the PyTorch half cast is made only where the face network stays on
        PyTorch."""
        on_engine = backend is not None and backend != "torch"
        if on_engine:
            from ..archs.retinaface import RetinaFace
            from ..engines import wrap

            def put(net: nn.Module, descriptor: Any = None, half: bool = False) -> nn.Module:
                return wrap(net, descriptor, backend, self.device, half=half, on_note=self.notes.append)

            self.net = put(self.net, self.descriptor, half)
            if self.parser is not None:
                self.parser = put(self.parser)
            if self.upsampler is not None and isinstance(self.upsampler.model, nn.Module):
                self.upsampler.model = put(self.upsampler.model)
            detector_net = getattr(self.detector, "net", None)  # RetinaFace detectors hold one; MTCNN's stay
            if isinstance(detector_net, RetinaFace):
                setattr(self.detector, "net", put(detector_net))  # noqa: B010
            if self.identity is not None:
                self.identity.net = put(self.identity.net)
        from ..engines.module import EngineModule

        if isinstance(self.net, EngineModule):
            self.dtype = torch.float32  # the engine takes fp32 and runs bf16 inside where asked
        elif half:
            self.net = _to_half(self.net, self.dtype)

    def with_options(self, **changes: Any) -> Restorer:
        """A copy that shares this one's networks, with other per-image settings (``upscale``,
        ``weight``, ``color_match``, ...); settings that load networks (``model``, ``detector``,
        ``min_face``, ...) need a new Restorer and are refused here."""
        needs_loading = sorted(set(changes) - self._PER_CALL)
        if needs_loading:
            raise ValueError(f"{', '.join(needs_loading)} cannot change without loading networks again: "
                             "build a new Restorer")
        clone = copy.copy(self)
        clone.options = self.options.replace(**changes).validate()
        clone.notes = list(self.notes)
        return clone

    # The settings read while restoring, from the one configuration.
    upscale = property(lambda self: self.options.upscale)
    seed = property(lambda self: self.options.seed)
    eye_dist_threshold = property(lambda self: self.options.eye_dist_threshold)
    keep_grey = property(lambda self: self.options.keep_grey)
    color_match = property(lambda self: self.options.color_match)
    det_threshold = property(lambda self: self.options.det_threshold)
    min_face = property(lambda self: self.options.min_face)
    landmark_check = property(lambda self: self.options.landmark_check)
    min_identity = property(lambda self: self.options.min_identity)
    identity_fallback = property(lambda self: self.options.identity_fallback)

    def _load_parser(self, parser, allow_download: bool) -> nn.Module | None:
        if parser is None:
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
            self.notes.append("faces are pasted with the soft square mask because the ParseNet weights are "
                              "unavailable: " + " ".join(str(exc).split("\n")))
            return None

    def _load_upsampler(self, bg_upsampler, bg_tile: int, allow_download: bool):
        from .upsampler import Upsampler

        if bg_upsampler is None or isinstance(bg_upsampler, Upsampler):
            return bg_upsampler
        loaded = load(bg_upsampler, self.device, allow_download=allow_download, purpose=Purpose.UPSCALING,
                      role="the background upsampler (--bg_upsampler)")
        self.model_files["bg_upsampler"] = loaded.source
        # The default tile_pad (24) keeps tiles within 1 grey level of the untiled result;
        # the official 10 leaves visible seams.
        return Upsampler(loaded.model, tile=bg_tile, device=self.device)

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
    def restore_faces(self, faces: Sequence[np.ndarray], weight: float = 0.5) -> list[np.ndarray]:
        """Aligned BGR uint8 faces (``face_size``) → restored BGR uint8 faces, in batches. ``weight``
        matters only to a network that takes a fidelity weight (CodeFormer's ``w``)."""
        restored: list[np.ndarray] = []
        for start in range(0, len(faces), self.batch_size):
            # Divide in float64 before going to float32, as the official img2tensor does: the
            # float32 quotient differs in the last bit for some levels, enough to flip a rounding.
            chunk = (np.stack(faces[start:start + self.batch_size]) / 255.0).astype(np.float32)
            # Contiguous NCHW: a channels-last input sends convolutions down another oneDNN path
            # whose sums differ in the last bits from the official ones.
            x = torch.from_numpy(chunk[..., ::-1].copy()).permute(0, 3, 1, 2).contiguous().to(self.device)
            x = ((x - 0.5) / 0.5).to(self.dtype)
            y = self._forward(x, weight).float().clamp_(-1, 1)
            y = ((y + 1) / 2 * 255.0).round().permute(0, 2, 3, 1).cpu().numpy()[..., ::-1]  # (B,H,W,3) BGR
            restored.extend(np.ascontiguousarray(face).astype(np.uint8) for face in y)
        return restored

    def _forward(self, x: torch.Tensor, weight: float = 0.5) -> torch.Tensor:
        if self.descriptor.takes_fidelity:  # CodeFormer: the weight is its fidelity, as its inference calls it
            return self.net(x, w=weight, adain=True)[0]
        if not self.descriptor.takes_noise:  # RestoreFormer(++), GPEN: no noise inputs
            return self.net(x)[0]
        if self.seed is None:
            return self.net(x, return_rgb=False, randomize_noise=False)[0]
        # Fresh noise, reproducibly, without touching the caller's global RNG state.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            return self.net(x, return_rgb=False, randomize_noise=True)[0]

    def blend_weight(self, weight: float) -> float:
        """The blend weight for a user's ``weight``: 1 (no blend) where the network took it as its
        fidelity weight, else ``weight``."""
        return 1.0 if self.descriptor.takes_fidelity else weight

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

    def enhance(self, img: np.ndarray, has_aligned: bool | None = None, only_center_face: bool | None = None,
                paste_back: bool = True, weight: float | None = None,
                landmarks: Sequence[np.ndarray] | None = None,
                ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray | None]:
        """Restore the faces of one image (BGR as OpenCV reads it; grey, BGRA and 16-bit too).

        Returns ``(cropped_faces, restored_faces, restored_img)`` like ``GFPGANer.enhance``:
        the aligned input faces (512×512, or the model's own size), the restored faces (BGR
        uint8), and the whole image at ``upscale`` with the faces pasted back, in the input's kind
        (grey stays grey, alpha is kept and upscaled, 16-bit stays 16-bit); ``None`` when
        ``has_aligned`` or not ``paste_back``. ``weight`` blends each restored face with its input
        face (0 = input, 1 = fully restored, the official output); for a model that takes a
        fidelity weight (CodeFormer) it is that weight (0 = quality, 1 = fidelity), with no blend.
        ``landmarks``: a list of 5×2 arrays in RetinaFace order; when given, detection is skipped.
        ``has_aligned``, ``only_center_face`` and ``weight`` default to the options' ``aligned``,
        ``only_center_face`` and ``weight``.
        :meth:`restore` gives the same with a record of each face (box, score, landmarks,
        identity score, weight used).
        """
        result = self.restore(img, has_aligned=has_aligned, only_center_face=only_center_face,
                              paste_back=paste_back, weight=weight, landmarks=landmarks)
        return result.cropped, result.restored, result.image

    def restore(self, img: np.ndarray, has_aligned: bool | None = None, only_center_face: bool | None = None,
                paste_back: bool = True, weight: float | None = None,
                landmarks: Sequence[np.ndarray] | None = None) -> RestoreResult:
        """:meth:`enhance`, returning a :class:`RestoreResult` with per-face records and notes."""
        return self.restore_many([img], has_aligned=has_aligned, only_center_face=only_center_face,
                                 paste_back=paste_back, weight=weight,
                                 landmarks=None if landmarks is None else [landmarks])[0]

    def restore_many(self, images: Sequence[np.ndarray], has_aligned: bool | None = None,
                     only_center_face: bool | None = None, paste_back: bool = True, weight: float | None = None,
                     landmarks: Sequence[Sequence[np.ndarray] | None] | None = None) -> list[RestoreResult]:
        """:meth:`restore` for several images, their faces sent through the network together
        (``batch_size`` per call: on a GPU a batch of faces costs little more than one).
        ``landmarks``: ``None``, or one entry per image (``None`` there detects). Each result
        equals what :meth:`restore` gives for that image with the same batch size."""
        options = self.options
        has_aligned = options.aligned if has_aligned is None else has_aligned
        only_center_face = options.only_center_face if only_center_face is None else only_center_face
        weight = check_weight(options.weight if weight is None else weight)
        landmarks = [None] * len(images) if landmarks is None else list(landmarks)
        if len(landmarks) != len(images):
            raise ValueError(f"{len(images)} images but {len(landmarks)} landmark entries")
        prepared, detect_ms = [], []
        for img, lms in zip(images, landmarks, strict=True):
            tick = time.perf_counter()
            prepared.append(self._prepare(img, has_aligned, only_center_face, lms))
            detect_ms.append((time.perf_counter() - tick) * 1000)
        tick = time.perf_counter()
        raw_all = self.restore_faces([crop for p in prepared for crop in p.cropped], weight)
        network_ms = (time.perf_counter() - tick) * 1000 / max(1, len(prepared))
        results, taken = [], 0
        for p, ms in zip(prepared, detect_ms, strict=True):
            tick = time.perf_counter()
            raw = raw_all[taken:taken + len(p.cropped)]
            taken += len(p.cropped)
            restored, records = self._restore_crops(p.cropped, weight, p.notes, raw=raw)
            if p.aligned:
                results.append(RestoreResult(p.cropped, restored, None, records, p.notes,
                                             _timings(ms, network_ms, tick)))
                continue
            for i, record in enumerate(records):
                record.landmarks = np.asarray(p.points[i], np.float64).round(2).tolist()
                if p.dets is not None:
                    record.box = np.asarray(p.dets[i, :4], np.float64).round(2).tolist()
                    record.score = round(float(p.dets[i, 4]), 6)
            image = self.paste_back(p.img, restored, p.affines) if paste_back else None
            results.append(RestoreResult(p.cropped, restored, image, records, p.notes, _timings(ms, network_ms, tick)))
        return results

    def _prepare(self, img: np.ndarray, has_aligned: bool, only_center_face: bool,
                 landmarks: Sequence[np.ndarray] | None) -> _Prepared:
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
            raw = self.restore_faces(cropped, weight)
        if self.color_match:
            from .colour import match_colour

            raw = [match_colour(r, c) for r, c in zip(raw, cropped, strict=True)]
        restored = [self.blend(r, c, self.blend_weight(weight)) for r, c in zip(raw, cropped, strict=True)]
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

    def enhance_video(self, src: str | Path, dst: str | Path, **options) -> VideoSummary:
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
        return from_pipeline(out, img, keep_grey=self.keep_grey)  # the input's kind: grey, alpha, bit depth


def _timings(detect_ms: float, network_ms: float, since: float) -> dict[str, float]:
    return {"detect": detect_ms, "restore": network_ms + (time.perf_counter() - since) * 1000}


def half_dtype(device: torch.device, on_note: Callable[[str], None] | None = None) -> torch.dtype:
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
            (on_note or _warn)("--half: this CPU has no bf16 instructions (AVX512-BF16 / AMX); running fp32")
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


def _warn(message: str) -> None:
    """Notes for callers of the helpers below who give no ``on_note`` (the Restorer always does)."""
    import warnings

    warnings.warn(message, stacklevel=3)


def resolve_bg_upsampler(choice: object, device: str | torch.device, allow_download: bool,
                         on_note: Callable[[str], None] | None = None) -> object:
    """What a background-upsampler option means. ``"realesrgan"`` behaves as the official CLI
    (Real-ESRGAN x2 on CUDA only, and only when its weights can be had; a Lanczos resize
    otherwise, with a note to ``on_note``, by default a warning); ``None`` resizes; a zoo name,
    file or module is used as given on any device."""
    note = on_note if on_note is not None else _warn
    if choice is None:  # "none" became None in RestoreOptions.validate
        return None
    if not (isinstance(choice, str) and choice.lower() == "realesrgan"):
        return choice
    if torch.device(device).type != "cuda":
        note("Real-ESRGAN is slow on CPU, so the background is resized instead "
                "(ask for it anyway with --bg_upsampler realesrgan-x2plus)")
        return None
    from ..models import zoo

    entry = zoo.find_entry("realesrgan-x2plus")
    if entry is None:  # a trimmed zoo
        note("background resized instead of Real-ESRGAN: realesrgan-x2plus is not in the zoo")
        return None
    try:
        zoo.ensure_model_file(entry, allow_download=allow_download)
    except zoo.ModelUnavailableError as exc:
        note(f"background resized instead of Real-ESRGAN: {str(exc).splitlines()[0]}")
        return None
    return entry.name  # by name, so loading checks it holds the zoo's architecture
