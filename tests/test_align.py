"""Face alignment / paste-back geometry (facerestore.face.align)."""

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facerestore.face import align

# Hand-placed landmarks of the two faces in Blake_Lively.jpg (shared reference README, "Face geometry"),
# float32 as a detector gives them.
BLAKE_LANDMARKS = np.array(
    [
        [[150.7, 180.0], [215.0, 203.3], [170.0, 229.0], [132.7, 245.0], [180.0, 260.0]],
        [[465.0, 159.3], [548.3, 175.0], [499.3, 213.3], [455.0, 237.3], [532.7, 254.0]],
    ],
    dtype=np.float32,
)
# What the official FaceRestoreHelper.align_warp_face computed for them (facexlib, OpenCV 5.0).
BLAKE_OFFICIAL_AFFINES = np.array(
    [
        [[1.7787738556, 0.65937661244, -196.10913126], [-0.65937661244, 1.7787738556, 20.338740273]],
        [[1.5187278704, 0.28249340135, -561.57782784], [-0.28249340135, 1.5187278704, 133.04670165]],
    ]
)
BLAKE_OFFICIAL_CROP_MEANS = (120.7563222249, 153.0472653707)


@pytest.fixture
def blake(shared_data):
    img = cv2.imread(str(shared_data / "photos" / "Blake_Lively.jpg"))
    assert img is not None and img.shape == (464, 700, 3)
    return img


def similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    t = np.deg2rad(angle_deg)
    c, s = scale * np.cos(t), scale * np.sin(t)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def apply(affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ affine[:, :2].T + affine[:, 2]


# ----------------------------------------------------------------------------- alignment


@pytest.mark.parametrize("angle,scale,shift", [(0, 1, (0, 0)), (17, 2.3, (-400, 120)), (-35, 0.6, (30, -50))])
def test_estimate_affine_recovers_known_similarity(angle, scale, shift):
    true = similarity(angle, scale, shift)  # image -> template
    landmarks = apply(cv2.invertAffineTransform(true), align.FFHQ_TEMPLATE_512)
    # (LMEDS refines with Levenberg-Marquardt: exact to ~1e-7 relative)
    np.testing.assert_allclose(align.estimate_affine(landmarks), true, rtol=1e-6, atol=1e-4)
    # template scaled with the face size
    true_256 = np.vstack([true[0] * 0.5, true[1] * 0.5])
    np.testing.assert_allclose(align.estimate_affine(landmarks, face_size=256), true_256, rtol=1e-6, atol=1e-4)


def test_estimate_affine_ignores_one_outlier_landmark():
    true = similarity(10, 1.8, (-100, 40))
    landmarks = apply(cv2.invertAffineTransform(true), align.FFHQ_TEMPLATE_512)
    landmarks[2] += (25.0, -30.0)  # a badly placed nose: LMEDS must not follow it
    np.testing.assert_allclose(align.estimate_affine(landmarks), true, atol=1e-4)


def test_affine_and_crop_match_official_pins(blake):
    crops, affines = align.align_faces(blake, list(BLAKE_LANDMARKS))
    np.testing.assert_allclose(np.stack(affines), BLAKE_OFFICIAL_AFFINES, rtol=1e-9, atol=1e-7)
    for crop, mean in zip(crops, BLAKE_OFFICIAL_CROP_MEANS, strict=True):
        assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8
        assert abs(crop.mean() - mean) < 0.05  # JPEG decoders may differ by a level here and there
    # the landmarks land on the template (hand-placed points: most within a few pixels)
    for lm, affine in zip(BLAKE_LANDMARKS, affines, strict=True):
        err = np.linalg.norm(apply(affine, lm) - align.FFHQ_TEMPLATE_512, axis=1)
        assert err.mean() < 8 and err.max() < 25


def test_warp_then_inverse_warp_returns_the_face_region(blake):
    # smoothed, so that the two bilinear resamplings lose nothing and only geometry is tested
    # (a half-pixel shift gives a mean error of several levels here)
    blake = cv2.GaussianBlur(blake, (0, 0), 2)
    affine = align.estimate_affine(BLAKE_LANDMARKS[0])
    crop = align.warp_face(blake, affine)
    back = cv2.warpAffine(crop, align.inverse_affine(affine, 1), (blake.shape[1], blake.shape[0]))
    square = cv2.warpAffine(np.ones((512, 512), np.float32), align.inverse_affine(affine, 1), (700, 464))
    inside = cv2.erode(square, np.ones((5, 5), np.uint8)) == 1
    assert inside.sum() > 20000  # the face covers a real area of the photo
    diff = np.abs(back.astype(int) - blake.astype(int))[inside]
    assert diff.mean() < 0.5 and diff.max() <= 4
    # outside the crop nothing comes back
    assert back[square == 0].max() == 0


def test_inverse_affine_shift_and_no_mutation():
    affine = similarity(20, 2.0, (-300, 50))
    keep = affine.copy()
    inv1 = align.inverse_affine(affine, 1)
    np.testing.assert_allclose(apply(inv1, apply(affine, np.array([[10.0, 20.0]]))), [[10.0, 20.0]], atol=1e-9)
    for s in (2, 4, 1.5):
        inv = align.inverse_affine(affine, s)
        np.testing.assert_allclose(inv[:, :2], inv1[:, :2] * s)
        np.testing.assert_allclose(inv[:, 2], inv1[:, 2] * s + 0.5 * s)  # the helper's extra offset
    assert np.array_equal(affine, keep)


# ----------------------------------------------------------------------------- paste-back


def test_paste_of_unchanged_faces_keeps_the_image(blake):
    crops, affines = align.align_faces(blake, list(BLAKE_LANDMARKS))
    invs = [align.inverse_affine(a, 1) for a in affines]
    pasted = align.paste_faces(blake, crops, invs, 1)
    assert pasted.shape == blake.shape and pasted.dtype == np.uint8
    diff = np.abs(pasted.astype(int) - blake.astype(int))
    touched = np.zeros(blake.shape[:2], bool)
    for crop, inv in zip(crops, invs, strict=True):
        _, soft = align.square_paste_mask(inv, crop.shape, blake.shape[:2], 1)
        touched |= soft > 0
    assert diff[touched].mean() < 3 and np.percentile(diff[touched], 99) < 20  # bilinear there and back
    assert diff[~touched].max() == 0  # the background is untouched away from the faces


def test_paste_with_inverted_face_follows_the_soft_mask(blake):
    """Pasting 255 - crop makes the blend weight visible: full inside, none outside, ramps between."""
    crops, affines = align.align_faces(blake, list(BLAKE_LANDMARKS[:1]))
    inv = align.inverse_affine(affines[0], 1)
    pasted = align.paste_faces(blake, [255 - crops[0]], [inv], 1).astype(np.float64)
    hard, soft = align.square_paste_mask(inv, (512, 512), blake.shape[:2], 1)
    inv_face = cv2.warpAffine(255 - crops[0], inv, (700, 464)).astype(np.float64)
    expected = soft[..., None] * hard[..., None] * inv_face + (1 - soft[..., None]) * blake
    assert np.abs(pasted - expected).max() <= 1.0  # truncation to uint8


def test_square_mask_is_soft_and_bounded():
    affine = align.estimate_affine(BLAKE_LANDMARKS[0])
    for s in (1, 2, 1.5):
        out_size = align.upscaled_size(464, 700, s)
        hard, soft = align.square_paste_mask(align.inverse_affine(affine, s), (512, 512), out_size, s)
        assert soft.shape == hard.shape == out_size and soft.dtype == np.float32
        assert soft.min() >= 0 and soft.max() <= 1 + 1e-6 and soft.max() > 0.999
        ramp = ((soft > 0.02) & (soft < 0.98)).sum()
        assert ramp > 0.05 * (soft > 0.98).sum()  # a real feather, not a step
        # the feather stays inside the eroded square (to within the even erosion kernel's 1-px skew)
        assert not np.any((soft > 0) & (cv2.dilate((hard > 0).astype(np.uint8), np.ones((3, 3))) == 0))
        assert soft.sum() < hard.sum()


@pytest.mark.parametrize("upscale", [2, 4, 1.5])
def test_paste_output_shape(blake, upscale):
    crops, affines = align.align_faces(blake, list(BLAKE_LANDMARKS))
    invs = [align.inverse_affine(a, upscale) for a in affines]
    small = blake[:232, :350]  # a smaller background: only the shape is under test
    out = align.paste_faces(small, crops, invs, upscale)
    assert out.shape == (int(232 * upscale), int(350 * upscale), 3) and out.dtype == np.uint8
    # an already upsampled background gives the same image as resizing here
    bg = cv2.resize(small, (int(350 * upscale), int(232 * upscale)), interpolation=cv2.INTER_LANCZOS4)
    out2 = align.paste_faces(bg, crops, invs, upscale, out_size=out.shape[:2])
    assert np.array_equal(out, out2)


def test_paste_handles_grey_alpha_and_16_bit(blake):
    crops, affines = align.align_faces(blake, list(BLAKE_LANDMARKS[:1]))
    invs = [align.inverse_affine(affines[0], 2)]
    size = align.upscaled_size(464, 700, 2)
    bg = cv2.resize(blake, (size[1], size[0]))
    ref = align.paste_faces(bg, crops, invs, 2, out_size=size)

    grey = align.paste_faces(cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY), crops, invs, 2, out_size=size)
    assert grey.shape == ref.shape  # the faces are colour: grey comes out as BGR

    alpha = np.full(size, 77, np.uint8)
    bgra = align.paste_faces(np.dstack([bg, alpha]), crops, invs, 2, out_size=size)
    assert bgra.shape == (*size, 4) and np.array_equal(bgra[..., 3], alpha)
    assert np.array_equal(bgra[..., :3], ref)

    deep = align.paste_faces(bg.astype(np.uint16) * 257, crops, invs, 2, out_size=size)
    assert deep.dtype == np.uint16
    assert np.abs(deep.astype(int) // 257 - ref.astype(int)).max() <= 1


def test_prepare_input():
    grey = np.full((4, 5), 9, np.uint8)
    assert align.prepare_input(grey).shape == (4, 5, 3)
    bgra = np.zeros((4, 5, 4), np.uint8)
    assert align.prepare_input(bgra).shape == (4, 5, 3)
    deep = np.full((4, 5, 3), 65535, np.uint16)
    assert np.allclose(align.prepare_input(deep), 255)


class StandInParser(nn.Module):
    """ParseNet's interface: RGB [-1, 1] (1, 3, 512, 512) -> (19 logits, image). Class 1 ("skin")
    inside a centred disc, class 0 ("background") elsewhere; records what it was given."""

    def __init__(self, radius: int = 150):
        super().__init__()
        yy, xx = torch.meshgrid(torch.arange(512), torch.arange(512), indexing="ij")
        self.register_buffer("disc", ((yy - 256) ** 2 + (xx - 256) ** 2 < radius**2).float())
        self.seen = None

    def forward(self, x):
        self.seen = x.clone()
        logits = torch.zeros(1, 19, 512, 512)
        logits[:, 1] = self.disc
        logits[:, 0] = 1 - self.disc
        return logits, x


def test_parse_face_mask_with_stand_in_parser():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    parser = StandInParser()
    mask = align.parse_face_mask(parser, face)
    # input: RGB, (v / 255 - 0.5) / 0.5
    expected = (face[..., ::-1].astype(np.float32) / 255 - 0.5) / 0.5
    np.testing.assert_allclose(parser.seen[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)

    assert mask.shape == (512, 512) and mask.dtype == np.float64
    assert mask.min() >= 0 and mask.max() <= 1
    assert mask[256, 256] > 0.999 and mask[256, 30] < 1e-3  # face kept, background not
    assert 0.2 < mask[256, 256 + 150] < 0.8  # soft edge on the disc border
    assert mask[:10].max() == 0 and mask[:, -10:].max() == 0  # cleared frame

    # classes 14, 16, 17, 18 (and 0) are not face
    class Neck(StandInParser):
        def forward(self, x):
            logits = torch.zeros(1, 19, 512, 512)
            logits[:, 17] = 1
            return logits, x

    assert align.parse_face_mask(Neck(), face).max() == 0


def test_paste_with_parse_mask_uses_it(blake):
    crops, affines = align.align_faces(blake, list(BLAKE_LANDMARKS[:1]))
    inv = align.inverse_affine(affines[0], 1)
    zero = np.zeros((512, 512))
    assert np.array_equal(align.paste_faces(blake, [255 - crops[0]], [inv], 1, face_masks=[zero]), blake)
    one = np.ones((512, 512))
    full = align.paste_faces(blake, [255 - crops[0]], [inv], 1, face_masks=[one])
    inv_face = cv2.warpAffine(255 - crops[0], inv, (700, 464))
    inside = cv2.erode(cv2.warpAffine(one, inv, (700, 464)), np.ones((3, 3))) == 1
    assert np.abs(full[inside].astype(int) - inv_face[inside]).max() <= 1


# ----------------------------------------------------------------------------- face selection


def _det(box, left_eye, right_eye, score=0.99):
    nose = [(left_eye[0] + right_eye[0]) / 2, left_eye[1] + 10]
    rest = [*nose, left_eye[0], left_eye[1] + 20, right_eye[0], right_eye[1] + 20]
    return [*box, score, *left_eye, *right_eye, *rest]


def test_select_faces():
    dets = np.array(
        [
            _det((0, 0, 40, 40), (10, 15), (30, 15)),  # corner face, eyes 20 px apart
            _det((80, 60, 125, 105), (90, 75), (110, 75)),  # nearest the centre of a 200 x 160 image
            _det((150, 100, 200, 150), (170, 120), (173, 121)),  # profile: eyes 3.2 px apart, largest box
        ],
        dtype=np.float32,
    )
    shape = (160, 200, 3)
    assert len(align.select_faces(dets, shape)) == 3
    np.testing.assert_allclose(align.eye_distances(dets), [20, 20, np.hypot(3, 1)], rtol=1e-6)
    kept = align.select_faces(dets, shape, eye_dist_threshold=5)
    assert np.array_equal(kept, dets[:2])
    assert np.array_equal(align.select_faces(dets, shape, only_center_face=True), dets[1:2])
    assert np.array_equal(align.select_faces(dets, shape, only_keep_largest=True), dets[2:3])
    # thresholding happens before choosing: the largest remaining one
    assert np.array_equal(align.select_faces(dets, shape, eye_dist_threshold=5, only_keep_largest=True), dets[1:2])
    assert align.select_faces(dets, shape, eye_dist_threshold=100).shape == (0, 15)
    lms = align.landmarks_from_detections(dets)
    assert lms.shape == (3, 5, 2) and np.array_equal(lms[1, 0], [90, 75]) and np.array_equal(lms[1, 1], [110, 75])


def test_largest_face_clips_boxes_to_the_image():
    boxes = np.array([[-500, -500, 20, 20], [0, 0, 60, 60]], dtype=np.float32)  # the first is mostly outside
    assert align.largest_face_index(boxes, 100, 100) == 1
    assert align.center_face_index(boxes, 100, 100) == 1
