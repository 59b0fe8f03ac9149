"""paste_faces blends only inside each face's footprint: the pixels must be those of the
helper's whole-image blend (kept here, unoptimised, as the reference)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from facerestore.face import align


def _whole_image_paste(background, faces, inverses, upscale, masks):
    """The helper's paste_faces_to_input_image arithmetic over the whole image (the old code)."""
    h_up, w_up = align.upscaled_size(background.shape[0], background.shape[1], upscale)
    sixteen = background.dtype == np.uint16
    out = cv2.resize(background, (w_up, h_up), interpolation=cv2.INTER_LANCZOS4)
    if out.ndim == 2:
        out = out[:, :, None]
    alpha = out[:, :, 3:] if out.shape[2] == 4 else None
    out = out[:, :, :3]
    for face, inv, parse_mask in zip(faces, inverses, masks, strict=True):
        inv_face = cv2.warpAffine(face, inv, (w_up, h_up))
        if parse_mask is None:
            hard, soft = align.square_paste_mask(inv, face.shape, (h_up, w_up), upscale)
            pasted, weight = hard[:, :, None] * inv_face, soft[:, :, None]
        else:
            mask = cv2.resize(parse_mask, (face.shape[1], face.shape[0]))
            weight = cv2.warpAffine(mask, inv, (w_up, h_up), flags=cv2.INTER_AREA)[:, :, None]
            pasted = inv_face
        if sixteen:
            pasted = pasted * np.float32(257)
        out = weight * pasted + (1 - weight) * out
    if alpha is not None:
        out = np.concatenate([out, alpha], axis=2)
    return out.astype(np.uint16 if sixteen else np.uint8)


def _case(rng, channels, dtype, size=64):
    h, w = 90, 120
    hi = 65535 if dtype == np.uint16 else 255
    shape = (h, w) if channels == 1 else (h, w, channels)
    img = rng.integers(0, hi + 1, shape, dtype=dtype)
    # Overlapping faces (0 and 1), one apart (2), one half outside the image (3).
    points = [((40, 40), 0.1, 0.55), ((58, 46), -0.3, 0.5), ((100, 20), 0.0, 0.3), ((112, 85), 0.7, 0.45)]
    faces, affines = [], []
    for (cx, cy), angle, scale in points:
        a = cv2.getRotationMatrix2D((size / 2, size / 2), np.degrees(angle), 1 / scale)
        a[:, 2] += (size / 2 - cx, size / 2 - cy)
        affines.append(a)
        faces.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return img, faces, affines


@pytest.mark.parametrize("upscale", [1, 2, 1.5])
@pytest.mark.parametrize("kind", ["bgr", "grey", "bgra", "bgr16"])
@pytest.mark.parametrize("parse", [False, True])
def test_region_paste_equals_whole_image_blend(upscale, kind, parse):
    rng = np.random.default_rng(hash((upscale, kind, parse)) % 2**32)
    channels, dtype = {"bgr": (3, np.uint8), "grey": (1, np.uint8), "bgra": (4, np.uint8),
                       "bgr16": (3, np.uint16)}[kind]
    img, faces, affines = _case(rng, channels, dtype)
    inverses = [align.inverse_affine(a, upscale) for a in affines]
    if parse:
        masks = []
        for _ in faces:
            m = cv2.GaussianBlur(rng.random((64, 64)), (9, 9), 3)
            m[:3], m[-3:], m[:, :3], m[:, -3:] = 0, 0, 0, 0
            masks.append(m)
    else:
        masks = [None] * len(faces)
    want = _whole_image_paste(img, faces, inverses, upscale, masks)
    got = align.paste_faces(img, faces, inverses, upscale, masks)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want)
    plain = cv2.resize(img, got.shape[1::-1], interpolation=cv2.INTER_LANCZOS4)
    plain = plain[:, :, None].repeat(3, axis=2) if plain.ndim == 2 else plain
    assert not np.array_equal(got[:, :, :3], plain[:, :, :3])  # the faces did land
    if kind == "bgra":
        assert np.array_equal(got[:, :, 3], plain[:, :, 3])


def test_footprint_bounds_the_warped_crop():
    rng = np.random.default_rng(3)
    for _ in range(50):
        a = cv2.getRotationMatrix2D((32, 32), rng.uniform(-180, 180), rng.uniform(0.2, 3))
        a[:, 2] += rng.uniform(-80, 80, 2)
        out_size = (150, 170)
        warped = cv2.warpAffine(np.full((64, 64), 255, np.uint8), a, out_size[::-1])
        y0, y1, x0, x1 = align.footprint(a, (64, 64), out_size)
        inside = np.zeros(out_size, bool)
        inside[y0:y1, x0:x1] = True
        assert not warped[~inside].any()


def test_no_faces_returns_the_resized_background():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = align.paste_faces(img, [], [], 2)
    assert np.array_equal(out, cv2.resize(img, (60, 40), interpolation=cv2.INTER_LANCZOS4))
