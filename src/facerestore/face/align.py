"""Face alignment and paste-back: the geometry of facexlib's ``FaceRestoreHelper``, as pure functions.

The pipeline for one image (all images are BGR, ``H x W x 3``):

1. ``select_faces`` / ``landmarks_from_detections``: keep the detections the helper keeps.
2. ``estimate_affine``: a similarity transform (rotation, uniform scale, shift) that maps the five
   landmarks onto the FFHQ template; ``warp_face`` cuts the ``face_size`` crop with it.
3. (the face is restored by a network, elsewhere)
4. ``inverse_affine``: the crop -> upscaled-image transform; ``paste_faces`` warps the restored
   faces back and blends them into the (upscaled) background with a soft mask, either a feathered
   square or a ParseNet face mask (``parse_face_mask``).

Every function gives the official pixels (same OpenCV calls, same dtypes, same order of
operations); where we deliberately differ it is said at the function.  Nothing here keeps state
or mutates its inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

# Five points (left eye, right eye, nose tip, left / right mouth corner), in pixels, of an FFHQ-aligned
# 512 x 512 face. "Left" is the image's left, as RetinaFace orders its landmarks.
FFHQ_TEMPLATE_512 = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)

# Grey used outside the source image when cropping, so that the network sees no hard black border.
CROP_BORDER_VALUE = (135, 133, 132)

# ParseNet's 19 CelebAMask-HQ classes -> paste mask (255 = take the restored face). Classes 0, 14,
# 16, 17, 18 (background and the hat / necklace / neck / cloth group) keep the background image.
MASK_COLORMAP = (0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 255, 0, 0, 0)


# --------------------------------------------------------------------------- face selection


def landmarks_from_detections(dets: np.ndarray) -> np.ndarray:
    """``(N, 15)`` detections ``[x1, y1, x2, y2, score, lx0, ly0, ..., lx4, ly4]`` -> ``(N, 5, 2)`` points."""
    dets = np.asarray(dets)
    return dets[:, 5:15].reshape(-1, 5, 2)


def eye_distances(dets: np.ndarray) -> np.ndarray:
    """Distance in pixels between the two eye landmarks of each ``(N, 15)`` detection."""
    dets = np.asarray(dets)
    return np.hypot(dets[:, 5] - dets[:, 7], dets[:, 6] - dets[:, 8])


def center_face_index(boxes: np.ndarray, height: int, width: int) -> int:
    """Index of the box whose centre is nearest the image centre (the first one on a tie)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    dist = np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)
    return int(np.argmin(dist))


def largest_face_index(boxes: np.ndarray, height: int, width: int) -> int:
    """Index of the box with the largest area inside the image (the first one on a tie)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    x1, x2 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 2], 0, width)
    y1, y2 = np.clip(boxes[:, 1], 0, height), np.clip(boxes[:, 3], 0, height)
    return int(np.argmax((x2 - x1) * (y2 - y1)))


def select_faces(
    dets: np.ndarray,
    image_shape: Sequence[int],
    *,
    eye_dist_threshold: float | None = None,
    only_center_face: bool = False,
    only_keep_largest: bool = False,
) -> np.ndarray:
    """The detections ``get_face_landmarks_5`` keeps, as a ``(K, 15)`` array (``K`` may be 0).

    Faces whose eyes are closer than ``eye_dist_threshold`` pixels (profiles, tiny faces) are
    dropped first; then at most one face is kept if asked: the largest (takes precedence, as in
    the helper) or the one nearest the image centre.
    """
    dets = np.asarray(dets).reshape(-1, 15)
    if eye_dist_threshold is not None:
        dets = dets[eye_distances(dets) >= eye_dist_threshold]
    if len(dets) == 0:
        return dets
    height, width = image_shape[:2]
    if only_keep_largest:
        return dets[[largest_face_index(dets[:, :4], height, width)]]
    if only_center_face:
        return dets[[center_face_index(dets[:, :4], height, width)]]
    return dets


# --------------------------------------------------------------------------- input image


def prepare_input(img: np.ndarray) -> np.ndarray:
    """The helper's ``read_image``: any image -> 3-channel BGR in the 0..255 range.

    16-bit data (a uint16 array, or, as officially, any data with a maximum above 256) is scaled
    to 0..255 and left as float64; grey is expanded to BGR; an alpha channel is dropped. (The
    official test alone would take a dark uint16 image, all values <= 256, for 8-bit data.)
    """
    if img.dtype == np.uint16 or np.max(img) > 256:
        img = img / 65535 * 255
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def upscaled_size(height: int, width: int, upscale: float) -> tuple[int, int]:
    """``(H_up, W_up)`` of the pasted image: truncated, as the helper does for non-integer factors."""
    return int(height * upscale), int(width * upscale)


# --------------------------------------------------------------------------- alignment


def face_template(face_size: int = 512, template: np.ndarray = FFHQ_TEMPLATE_512) -> np.ndarray:
    """The 5-point template for a ``face_size`` crop (the 512 one scaled)."""
    return np.asarray(template, dtype=np.float64) * (face_size / 512.0)


def estimate_affine(
    landmarks5: np.ndarray, template: np.ndarray = FFHQ_TEMPLATE_512, face_size: int = 512
) -> np.ndarray:
    """``(2, 3)`` float64 similarity transform mapping image points onto the template.

    ``landmarks5`` is ``(5, 2)`` (x, y). LMEDS is the helper's choice (it mimics skimage's
    least-squares similarity on clean points and ignores one bad landmark); OpenCV's LMEDS seeds
    its sampler identically on every call, so the result is deterministic.
    ``template`` is given for 512 pixels and scaled to ``face_size``.
    """
    dst = face_template(face_size, template)
    affine, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks5), dst, method=cv2.LMEDS)
    if affine is None:
        raise ValueError(f"cannot fit a similarity transform to landmarks {np.asarray(landmarks5).tolist()}")
    return affine


def warp_face(
    img: np.ndarray,
    affine: np.ndarray,
    face_size: int = 512,
    border_value: tuple[int, int, int] = CROP_BORDER_VALUE,
) -> np.ndarray:
    """The ``face_size x face_size`` aligned crop (bilinear, constant grey outside the image)."""
    return cv2.warpAffine(
        img, affine, (face_size, face_size), borderMode=cv2.BORDER_CONSTANT, borderValue=border_value
    )


def align_faces(
    img: np.ndarray, landmarks: Sequence[np.ndarray], face_size: int = 512
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Crops and affine matrices for a batch of faces: ``([crop], [affine])``."""
    affines = [estimate_affine(lm, face_size=face_size) for lm in landmarks]
    return [warp_face(img, a, face_size) for a in affines], affines


def inverse_affine(affine: np.ndarray, upscale: float = 1) -> np.ndarray:
    """The crop -> upscaled-image transform used to paste a face back (a new array).

    This is the matrix the helper effectively warps with: the inverse, scaled by ``upscale``,
    plus ``0.5 * upscale`` on the translation when ``upscale > 1``. (The helper stores it without
    that shift and adds it in place while pasting; we return the shifted one and mutate nothing.)
    """
    inv = cv2.invertAffineTransform(affine) * upscale
    if upscale > 1:
        inv[:, 2] += 0.5 * upscale
    return inv


# --------------------------------------------------------------------------- paste-back


def parse_face_mask(parser: nn.Module, face_bgr_uint8: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """A soft ``512 x 512`` float64 mask in [0, 1] of the face in a restored crop, from ParseNet.

    ``parser(x)`` must return ``(logits (1, 19, 512, 512), image)`` for ``x`` RGB in [-1, 1].
    Each pixel's argmax class is mapped through ``MASK_COLORMAP``; two 101-tap Gaussian blurs
    (sigma 11) feather the mask and a 10-pixel frame is cleared so the crop border never shows.
    """
    return parse_face_masks(parser, [face_bgr_uint8], device)[0]


def parse_face_masks(parser: nn.Module, faces_bgr_uint8: Sequence[np.ndarray], device: torch.device | str = "cpu",
                     batch_size: int = 1) -> list[np.ndarray]:
    """:func:`parse_face_mask` for several faces, ``batch_size`` per ParseNet call (1 on CPU
    gives the official logits; batches pay on GPUs)."""
    masks: list[np.ndarray] = []
    for start in range(0, len(faces_bgr_uint8), max(1, batch_size)):
        chunk = [_parser_input(face) for face in faces_bgr_uint8[start:start + max(1, batch_size)]]
        # (B, 3, 512, 512) as a view of (B, H, W, 3): channels-last strides, like the helper's
        # img2tensor; the layout picks the convolution algorithm, so it decides the last bits.
        x = torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).to(device)
        x = (x - 0.5) / 0.5
        with torch.no_grad():
            logits = parser(x)[0]  # (B, 19, 512, 512)
        labels = logits.argmax(dim=1).cpu().numpy()  # (B, 512, 512)
        masks.extend(_soft_mask(one) for one in labels)
    return masks


def _parser_input(face_bgr_uint8: np.ndarray) -> np.ndarray:
    face = cv2.resize(face_bgr_uint8, (512, 512), interpolation=cv2.INTER_LINEAR)
    face = cv2.cvtColor(face.astype(np.float32) / 255.0, cv2.COLOR_BGR2RGB)
    return face  # (512, 512, 3) RGB in [0, 1]


def _soft_mask(labels: np.ndarray) -> np.ndarray:
    mask = np.asarray(MASK_COLORMAP, dtype=np.float64)[labels]
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    mask = cv2.GaussianBlur(mask, (101, 101), 11)
    thres = 10
    mask[:thres, :] = 0
    mask[-thres:, :] = 0
    mask[:, :thres] = 0
    mask[:, -thres:] = 0
    return mask / 255.0


def square_paste_mask(
    inv_affine: np.ndarray, face_shape: Sequence[int], out_size: tuple[int, int], upscale: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(hard, soft)`` float32 ``(H_up, W_up)`` masks of a pasted square crop.

    ``hard`` is the warped crop square eroded by ``int(2 * upscale)`` pixels, so the bilinear
    fade at the warped square's edge (where the restored face mixes with black) is cut away.
    ``soft`` shrinks it further by ``2 * w_edge`` and blurs it over as much, with
    ``w_edge = int(sqrt(face area)) // 20``: the feather is 5% of the face's side.
    """
    h_up, w_up = out_size
    square = np.ones(tuple(face_shape[:2]), dtype=np.float32)
    inv_mask = cv2.warpAffine(square, inv_affine, (w_up, h_up))
    k = int(2 * upscale)
    hard = cv2.erode(inv_mask, np.ones((k, k), np.uint8))
    w_edge = int(np.sum(hard) ** 0.5) // 20
    centre = cv2.erode(hard, np.ones((2 * w_edge, 2 * w_edge), np.uint8))
    soft = cv2.GaussianBlur(centre, (2 * w_edge + 1, 2 * w_edge + 1), 0)
    return hard, soft


def paste_faces(
    background: np.ndarray,
    restored_faces: Sequence[np.ndarray],
    inverse_affines: Sequence[np.ndarray],
    upscale: float = 1,
    face_masks: Sequence[np.ndarray | None] | None = None,
    out_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Blend restored faces back into the image: the helper's ``paste_faces_to_input_image``.

    Args:
        background: the input image (3-channel, as ``prepare_input`` gives), or an already
            upsampled background (grey, BGR or BGRA); it is resized with Lanczos to ``out_size``.
        restored_faces: BGR uint8 crops, in the order of ``inverse_affines``.
        inverse_affines: from ``inverse_affine(affine, upscale)`` (the shift already in).
        upscale: the paste factor (1, 2, 4, or any float).
        face_masks: per face, ``None`` for the feathered square, or a ParseNet mask from
            ``parse_face_mask`` (the helper's ``use_parse=True``).
        out_size: ``(H_up, W_up)``; by default ``upscaled_size`` of the background's size,
            i.e. ``background`` is taken to be the input image. Pass it with an upsampled one.

    Returns the pasted ``(H_up, W_up, C)`` image: uint8, or uint16 for a uint16 background
    (then the 8-bit faces are scaled by 257; the helper mixes the two ranges unscaled). Faces are
    blended one after the other; like the helper we truncate (not round) to integers, and keep
    the blend in float32 for square masks and float64 for parse masks, to give its very pixels.
    A grey background comes out as BGR; an alpha channel passes through untouched.
    """
    if len(restored_faces) != len(inverse_affines):
        raise ValueError(f"{len(restored_faces)} restored faces but {len(inverse_affines)} inverse affines")
    if face_masks is None:
        face_masks = [None] * len(restored_faces)
    if out_size is None:
        out_size = upscaled_size(background.shape[0], background.shape[1], upscale)
    h_up, w_up = out_size

    sixteen_bit = background.dtype == np.uint16
    face_range = 257 if sixteen_bit else 1  # 255 * 257 = 65535
    out = cv2.resize(background, (w_up, h_up), interpolation=cv2.INTER_LANCZOS4)
    if out.ndim == 2:
        out = out[:, :, None]
    if not restored_faces:
        return out
    if out.shape[2] == 1:  # a grey background: the blend with BGR faces makes it BGR, as in the helper
        out = np.repeat(out, 3, axis=2)
    canvas = out[:, :, :3]  # blended in place; an alpha channel passes through untouched

    # The helper blends each face over the whole upscaled image in float64; outside a face's
    # footprint its weight is exactly 0, so ``0 * face + 1 * out`` gives ``out`` back unchanged.
    # We therefore blend only inside each face's footprint (the warped crop square, padded), and
    # faces whose footprints overlap together over their union, in order, so the second sees the
    # first's unrounded float result as in the helper. The warps themselves stay full-size:
    # OpenCV's warpAffine rounds differently for a shifted or smaller destination.
    boxes = [footprint(inv, face.shape, out_size) for face, inv in zip(restored_faces, inverse_affines, strict=True)]
    for group in _overlapping_groups(boxes):
        y0 = min(boxes[i][0] for i in group)
        y1 = max(boxes[i][1] for i in group)
        x0 = min(boxes[i][2] for i in group)
        x1 = max(boxes[i][3] for i in group)
        if y0 >= y1 or x0 >= x1:
            continue  # entirely outside the image
        region = canvas[y0:y1, x0:x1]
        for i in group:
            face, inv_affine, parse_mask = restored_faces[i], inverse_affines[i], face_masks[i]
            inv_face = cv2.warpAffine(face, inv_affine, (w_up, h_up))[y0:y1, x0:x1]  # black outside the crop
            if parse_mask is None:
                hard, soft = square_paste_mask(inv_affine, face.shape, out_size, upscale)
                pasted = hard[y0:y1, x0:x1, None] * inv_face  # float32
                weight = soft[y0:y1, x0:x1, None]
            else:
                mask = cv2.resize(parse_mask, (face.shape[1], face.shape[0]))
                # flags=3 (INTER_AREA) is what the helper passes; warpAffine treats it as bilinear.
                weight = cv2.warpAffine(mask, inv_affine, (w_up, h_up), flags=cv2.INTER_AREA)[y0:y1, x0:x1, None]
                pasted = inv_face  # no erosion: the parse mask is already 0 at the crop border
            if sixteen_bit:
                pasted = pasted * np.float32(face_range)
            region = weight * pasted + (1 - weight) * region
        canvas[y0:y1, x0:x1] = region.astype(canvas.dtype)  # truncated, as the helper's astype
    return out


def footprint(inv_affine: np.ndarray, face_shape: Sequence[int], out_size: tuple[int, int],
              pad: int = 3) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the part of the ``out_size`` image a pasted crop can touch.

    A bilinear warp reads a destination pixel from the crop only if it maps to within one
    pixel of the crop, so the warped square ``[-1, w] x [-1, h]`` plus a margin for OpenCV's
    fixed-point coordinates bounds every non-zero warped value (a test checks it against full
    warps). Clipped to the image; empty (``y0 >= y1``) when the face lies outside it.
    """
    h, w = face_shape[:2]
    corners = np.array([[-1, -1, 1], [w, -1, 1], [-1, h, 1], [w, h, 1]], dtype=np.float64)
    xy = corners @ np.asarray(inv_affine, dtype=np.float64).T
    h_up, w_up = out_size
    x0 = int(np.clip(np.floor(xy[:, 0].min()) - pad, 0, w_up))
    x1 = int(np.clip(np.ceil(xy[:, 0].max()) + pad + 1, 0, w_up))
    y0 = int(np.clip(np.floor(xy[:, 1].min()) - pad, 0, h_up))
    y1 = int(np.clip(np.ceil(xy[:, 1].max()) + pad + 1, 0, h_up))
    return y0, y1, x0, x1


def _overlapping_groups(boxes: Sequence[tuple[int, int, int, int]]) -> list[list[int]]:
    """Indices of ``(y0, y1, x0, x1)`` boxes grouped so that boxes which overlap (directly or
    through others) share a group; each group in ascending order (the paste order)."""
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j in range(i):
            b = boxes[j]
            if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])
