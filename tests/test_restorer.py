"""The whole-photo pipeline with stand-in networks: geometry, weight, image kinds, landmarks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facerestore.models import ModelDescriptor, Purpose
from facerestore.io.images import is_grey
from facerestore.pipeline.restorer import Restorer
from stand_ins import FixedDetector, NoDetector

# Hand-placed landmarks (RetinaFace order) on ../shared/data/photos/Blake_Lively.jpg.
BLAKE_LANDMARKS = [
    np.array([[150.7, 180.0], [215.0, 203.3], [170.0, 229.0], [132.7, 245.0], [180.0, 260.0]], np.float32),
    np.array([[465.0, 159.3], [548.3, 175.0], [499.3, 213.3], [455.0, 237.3], [532.7, 254.0]], np.float32),
]


FACE_NET = ModelDescriptor("StandIn", Purpose.FACE_RESTORATION, input_size=512, input_range=(-1.0, 1.0),
                           takes_noise=True)


class IdentityFaceNet(nn.Module):
    """Returns its input: 'restoration' that changes nothing, so pasting must give the input back."""

    descriptor = FACE_NET

    def forward(self, x, return_rgb=True, randomize_noise=True):
        return x, []


class ConstantFaceNet(nn.Module):
    descriptor = FACE_NET

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x, return_rgb=True, randomize_noise=True):
        return torch.full_like(x, self.value), []


def _restorer(net, upscale=1, detector=None, **kw) -> Restorer:
    return Restorer(model=net, upscale=upscale, detector=detector or NoDetector(), parser=None, **kw)


@pytest.fixture
def blake(shared_data):
    img = cv2.imread(str(shared_data / "photos" / "Blake_Lively.jpg"))
    assert img is not None
    return img


def test_identity_restoration_pastes_the_photo_back(blake):
    r = _restorer(IdentityFaceNet(), upscale=1)
    cropped, restored, out = r.enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    assert len(cropped) == len(restored) == 2
    assert all(c.shape == (512, 512, 3) and c.dtype == np.uint8 for c in cropped)
    assert out.shape == blake.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - blake.astype(int))
    # Two bilinear warps blur a little and the paste truncates (as the official does); nothing moves.
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 20


def test_upscale_two_doubles_the_image(blake):
    r = _restorer(IdentityFaceNet(), upscale=2)
    _, _, out = r.enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    assert out.shape == (blake.shape[0] * 2, blake.shape[1] * 2, 3)
    back = cv2.resize(out, (blake.shape[1], blake.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(back.astype(int) - blake.astype(int)).mean() < 3


def test_weight_blends_restored_and_input_faces(blake):
    r = _restorer(ConstantFaceNet(-1.0))  # restores every face to black
    crops, full, img_full = r.enhance(blake, weight=1.0, landmarks=BLAKE_LANDMARKS)
    _, none, img_none = r.enhance(blake, weight=0.0, landmarks=BLAKE_LANDMARKS)
    _, half, img_half = r.enhance(blake, weight=0.5, landmarks=BLAKE_LANDMARKS)
    assert all((f == 0).all() for f in full)
    assert all(np.array_equal(n, c) for n, c in zip(none, crops))
    for h, c in zip(half, crops):
        assert np.abs(h.astype(int) - np.round(c / 2).astype(int)).max() <= 1
    # The knob reaches the output image, monotonically.
    assert img_none.mean() > img_half.mean() > img_full.mean()


def test_blend_follows_the_formula_at_an_asymmetric_weight():
    """weight · restored + (1 − weight) · input: at 0.3 a swap of the two terms is visible (at 0,
    0.5 and 1 it is not)."""
    restored = np.full((4, 4, 3), 200, np.uint8)
    original = np.full((4, 4, 3), 100, np.uint8)
    assert (Restorer.blend(restored, original, 0.3) == 130).all()  # the swap gives 170
    rng = np.random.default_rng(0)
    restored = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    original = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    got = Restorer.blend(restored, original, 0.3)
    exact = 0.3 * restored.astype(np.float64) + 0.7 * original.astype(np.float64)
    # Rounded to the nearest level (a tie, 10% of these pairs, may go either way in float32).
    assert got.dtype == np.uint8 and np.abs(got - exact).max() <= 0.5 + 1e-4


def test_weight_03_restores_the_blend_of_weight_1_and_weight_0():
    """End to end: the faces at weight 0.3 are 0.3 × the weight-1 faces + 0.7 × the weight-0 ones,
    and the pasted image lies nearer the weight-0 image than the weight-1 one."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:160, 0:200]
    img = np.stack([xx, yy, (xx + yy) // 2], axis=2).astype(np.float64)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    # A face in the middle: the FFHQ template at 1/4 scale, slightly rotated by the offsets.
    from facerestore.face.align import FFHQ_TEMPLATE_512

    face = (FFHQ_TEMPLATE_512 * 0.25 + [40, 20] + [[0, 0], [0, 2], [1, 1], [0, 1], [0, 3]]).astype(np.float32)
    r = _restorer(ConstantFaceNet(0.6))  # a flat light face, unlike the input crop
    crops, full, img_full = r.enhance(img, weight=1.0, landmarks=[face])
    _, none, img_none = r.enhance(img, weight=0.0, landmarks=[face])
    _, part, img_part = r.enhance(img, weight=0.3, landmarks=[face])
    assert np.array_equal(none[0], crops[0])
    exact = 0.3 * full[0].astype(np.float64) + 0.7 * none[0].astype(np.float64)
    assert np.abs(part[0] - exact).max() <= 0.5 + 1e-4
    to_none = np.abs(img_part.astype(int) - img_none.astype(int)).mean()
    to_full = np.abs(img_part.astype(int) - img_full.astype(int)).mean()
    assert 0 < to_none < to_full


def test_given_landmarks_skip_detection_and_detection_path_matches(blake):
    with_landmarks = _restorer(IdentityFaceNet()).enhance(blake, landmarks=BLAKE_LANDMARKS)
    detected = _restorer(IdentityFaceNet(), detector=FixedDetector(BLAKE_LANDMARKS)).enhance(blake)
    for a, b in zip(with_landmarks[0], detected[0]):
        assert np.array_equal(a, b)
    assert np.array_equal(with_landmarks[2], detected[2])


def test_only_center_face_keeps_one(blake):
    r = _restorer(IdentityFaceNet(), detector=FixedDetector(BLAKE_LANDMARKS))
    cropped, _, _ = r.enhance(blake, only_center_face=True)
    assert len(cropped) == 1


def test_aligned_input_is_restored_directly():
    face = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    r = _restorer(IdentityFaceNet())
    cropped, restored, out = r.enhance(face, has_aligned=True, weight=1)
    assert out is None and cropped[0].shape == (512, 512, 3)
    assert np.abs(restored[0].astype(int) - cropped[0].astype(int)).max() <= 1


def test_grey_input_comes_back_grey(blake):
    grey = cv2.cvtColor(blake, cv2.COLOR_BGR2GRAY)
    r = _restorer(ConstantFaceNet(0.3), upscale=2)  # a coloured-ish constant face
    _, _, out = r.enhance(grey, landmarks=BLAKE_LANDMARKS)
    assert out.ndim == 2 and out.shape == (grey.shape[0] * 2, grey.shape[1] * 2)
    as_colour = np.dstack([grey] * 3)
    _, _, out3 = r.enhance(as_colour, landmarks=BLAKE_LANDMARKS)
    assert out3.shape[2] == 3 and is_grey(out3)
    colour = Restorer(model=ConstantFaceNet(0.3), detector=NoDetector(), parser=None, keep_grey=False)
    assert colour.enhance(grey, landmarks=BLAKE_LANDMARKS)[2].ndim == 3


def test_alpha_is_kept_and_upscaled(blake):
    alpha = np.zeros(blake.shape[:2], np.uint8)
    alpha[:, : blake.shape[1] // 2] = 255
    bgra = np.dstack([blake, alpha])
    _, _, out = _restorer(IdentityFaceNet(), upscale=2).enhance(bgra, landmarks=BLAKE_LANDMARKS)
    assert out.shape == (blake.shape[0] * 2, blake.shape[1] * 2, 4)
    assert out[:, : blake.shape[1] - 10, 3].min() == 255 and out[:, blake.shape[1] + 10:, 3].max() == 0


def test_sixteen_bit_stays_sixteen_bit(blake):
    img16 = blake.astype(np.uint16) * 257
    r = _restorer(ConstantFaceNet(0.2))
    _, _, out = r.enhance(img16, weight=1, landmarks=BLAKE_LANDMARKS)
    _, _, out8 = r.enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    assert out.dtype == np.uint16 and out.shape == blake.shape
    # Same picture as the 8-bit run, at 16-bit scale (faces restored at 8-bit precision).
    assert np.abs(out.astype(float) / 257 - out8).max() <= 1.5


def test_batched_faces_equal_one_at_a_time(blake):
    one = _restorer(ConstantFaceNet(0.1), batch_size=1).enhance(blake, landmarks=BLAKE_LANDMARKS)
    many = _restorer(ConstantFaceNet(0.1), batch_size=8).enhance(blake, landmarks=BLAKE_LANDMARKS)
    assert np.array_equal(one[2], many[2])


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.float32), np.zeros((10, 10, 2), np.uint8),
                                 np.zeros((1, 10, 3), np.uint8), "photo.jpg"])
def test_bad_arrays_are_refused_clearly(bad):
    with pytest.raises((TypeError, ValueError)):
        _restorer(IdentityFaceNet()).enhance(bad)


def test_no_face_gives_the_upscaled_background():
    img = np.full((64, 80, 3), 120, np.uint8)

    class Empty:
        def detect(self, img, conf_threshold=0.97):
            return np.zeros((0, 15), np.float32)

    cropped, restored, out = _restorer(IdentityFaceNet(), upscale=2, detector=Empty()).enhance(img)
    assert cropped == [] and restored == [] and out.shape == (128, 160, 3)


def test_background_upsampler_from_a_weights_file(blake, tmp_path):
    from facerestore.archs.rrdbnet import RRDBNet

    small = RRDBNet(num_in_ch=3, num_out_ch=3, scale=2, num_feat=8, num_block=1, num_grow_ch=4)
    path = tmp_path / "tiny_x2.pth"
    torch.save({"params_ema": small.state_dict()}, path)
    tiled = _restorer(IdentityFaceNet(), upscale=2, bg_upsampler=path, bg_tile=128)
    untiled = _restorer(IdentityFaceNet(), upscale=2, bg_upsampler=path, bg_tile=0)
    _, _, a = tiled.enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    _, _, b = untiled.enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    assert a.shape == (blake.shape[0] * 2, blake.shape[1] * 2, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # seamless tiling
    # Not the plain resize: the (random) network really made the background.
    resized = _restorer(IdentityFaceNet(), upscale=2).enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)[2]
    assert np.abs(a.astype(int) - resized.astype(int)).mean() > 5


def test_stored_noise_by_default_and_seeded_fresh_noise(blake):
    from facerestore.archs.gfpgan import GFPGANv1Clean

    torch.manual_seed(0)
    net = GFPGANv1Clean(out_size=512, num_style_feat=32, channel_multiplier=1, num_mlp=1, narrow=1 / 16,
                        input_is_latent=True, different_w=True, sft_half=True)
    with torch.no_grad():  # make the noise matter: default noise strengths are 0
        for name, p in net.named_parameters():
            if ".style_convs." in name and name.endswith(".weight") and p.numel() == 1:  # noise strength
                p.fill_(0.5)

    def faces(seed):
        r = Restorer(model=net, detector=NoDetector(), parser=None, seed=seed)
        return r.enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS[:1])[1][0]

    stored_a, stored_b = faces(None), faces(None)
    seeded_a, seeded_b, other = faces(7), faces(7), faces(8)
    assert np.array_equal(stored_a, stored_b)          # deterministic by default
    assert np.array_equal(seeded_a, seeded_b)          # a seed reproduces its noise
    assert not np.array_equal(seeded_a, other)         # and different seeds differ
    assert not np.array_equal(seeded_a, stored_a)
    # Seeding does not disturb the caller's random stream.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    faces(7)
    assert torch.equal(torch.rand(3), expected)


def test_face_tensor_conversion_is_the_official_arithmetic(blake):
    """BGR uint8 → RGB [-1, 1] NCHW (contiguous, divided in float64) → net → clamp → round."""
    from facerestore.archs.gfpgan import GFPGANv1Clean

    torch.manual_seed(3)
    net = GFPGANv1Clean(out_size=512, num_style_feat=32, channel_multiplier=1, num_mlp=1, narrow=1 / 16,
                        input_is_latent=True, different_w=True, sft_half=True).eval()
    face = cv2.resize(blake[100:400, 300:600], (512, 512))
    x = torch.from_numpy((face / 255.0).astype(np.float32)[..., ::-1].transpose(2, 0, 1).copy())[None]
    with torch.inference_mode():
        y = net((x - 0.5) / 0.5, return_rgb=False, randomize_noise=False)[0][0].clamp(-1, 1)
    expected = (((y + 1) / 2).permute(1, 2, 0).numpy()[..., ::-1] * 255.0).round().astype(np.uint8)
    got = Restorer(model=net, detector=NoDetector(), parser=None).restore_faces([face])[0]
    assert np.array_equal(got, expected)


def test_single_channel_layouts_and_dark_sixteen_bit(blake):
    grey = cv2.cvtColor(blake, cv2.COLOR_BGR2GRAY)
    r = _restorer(ConstantFaceNet(0.0), upscale=1)
    flat = r.enhance(grey, weight=1, landmarks=BLAKE_LANDMARKS)[2]
    column = r.enhance(grey[:, :, None], weight=1, landmarks=BLAKE_LANDMARKS)[2]
    assert column.shape == grey.shape and np.array_equal(flat, column)
    # A dark 16-bit image (every value <= 256) is still 16-bit data: faces must not be scaled by 257.
    dark = np.full((400, 600, 3), 200, np.uint16)
    out = _restorer(IdentityFaceNet()).enhance(dark, weight=0, landmarks=BLAKE_LANDMARKS[:1])[2]
    assert out.dtype == np.uint16 and out.max() < 1000  # 8-bit face precision: ±257, not x257


# --------------------------------------------------------------------------- one configuration


def test_options_are_the_only_configuration_and_overrides_win():
    from facerestore.pipeline.options import RestoreOptions

    given = RestoreOptions(upscale=3, weight=0.2, min_face=12)
    r = Restorer(given, model=IdentityFaceNet(), detector=NoDetector(), parser=None, upscale=1)
    assert r.options is not given and given.upscale == 3  # the caller's options are not changed
    assert (r.upscale, r.options.weight, r.min_face) == (1, 0.2, 12)
    face = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    cropped, restored, _ = r.enhance(face, has_aligned=True)  # weight from the options
    assert r.options.weight == 0.2 and restored[0].shape == cropped[0].shape
    assert isinstance(Restorer(IdentityFaceNet(), detector=NoDetector(), parser=None).net, IdentityFaceNet)


def test_overrides_are_checked_as_options_are():
    from facerestore.pipeline.options import OptionsError

    with pytest.raises(TypeError, match="upscle"):
        _restorer(IdentityFaceNet(), upscle=2)
    with pytest.raises(OptionsError, match="-s/--upscale"):
        _restorer(IdentityFaceNet(), upscale=0.5)
    with pytest.raises(OptionsError, match="--min-face"):
        _restorer(IdentityFaceNet(), min_face=-1)
    with pytest.raises(TypeError, match="twice"):
        Restorer(IdentityFaceNet(), model=IdentityFaceNet())


def test_none_is_read_once_in_validate():
    r = Restorer(model=IdentityFaceNet(), detector=NoDetector(), parser="None", bg_upsampler="none",
                 identity_model="NONE")
    assert (r.options.parser, r.options.bg_upsampler, r.options.identity_model) == (None, None, None)
    assert r.parser is None and r.upsampler is None and r.identity is None and r.notes == []


def test_with_options_shares_the_networks_and_refuses_what_needs_loading():
    r = _restorer(IdentityFaceNet(), upscale=1)
    bigger = r.with_options(upscale=2, weight=1.0)
    assert bigger.net is r.net and bigger.detector is r.detector and (bigger.upscale, r.upscale) == (2, 1)
    with pytest.raises(ValueError, match="min_face"):
        r.with_options(min_face=30)  # MTCNN builds its pyramid from it when loaded


def test_the_video_pipeline_does_not_import_the_restorer():
    import subprocess
    import sys

    code = ("import sys; from facerestore.pipeline.video import VideoOptions; VideoOptions().validate(); "
            "print('facerestore.pipeline.restorer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # check_weight lives in options.py: no restorer <-> video cycle


# ----------------------------------------------------------------------------- other face families
class FidelityFaceNet(nn.Module):
    """A stand-in with CodeFormer's call: records ``w``, returns a flat face of value ``w``."""

    descriptor = ModelDescriptor("FidelityStandIn", Purpose.FACE_RESTORATION, input_size=512,
                                 input_range=(-1.0, 1.0), takes_fidelity=True)

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[float, bool]] = []

    def forward(self, x, w=0, adain=False):
        self.calls.append((w, adain))
        return torch.full_like(x, w), None, None


def test_fidelity_weight_goes_into_the_network_without_blending(blake):
    net = FidelityFaceNet()
    r = _restorer(net)
    result = r.restore(blake, weight=0.25, landmarks=BLAKE_LANDMARKS)
    assert net.calls and set(net.calls) == {(0.25, True)}  # the official inference's adain=True
    # not blended with the input face: every pixel is the network's ((0.25 + 1) / 2 * 255)
    assert all(np.all(face == round(1.25 / 2 * 255)) for face in result.restored)
    assert [rec.weight for rec in result.faces] == [0.25, 0.25]


def test_a_256_px_gpen_gets_256_px_crops(blake):
    from facerestore.archs.gpen import FullGenerator

    torch.manual_seed(0)
    net = FullGenerator(256, style_dim=16, n_mlp=1, channel_multiplier=1, narrow=0.0625).eval()
    r = _restorer(net, upscale=1)
    assert r.face_size == 256
    cropped, restored, out = r.enhance(blake, weight=0.5, landmarks=BLAKE_LANDMARKS)
    assert all(c.shape == (256, 256, 3) for c in cropped) and all(f.shape == (256, 256, 3) for f in restored)
    assert out.shape == blake.shape
