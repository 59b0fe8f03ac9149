"""Tiled background upsampler (facerestore.pipeline.upsampler)."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facerestore.models.descriptor import ModelDescriptor, Purpose
from facerestore.pipeline.upsampler import Upsampler


def _sr_descriptor(scale: int) -> ModelDescriptor:
    return ModelDescriptor("TestSR", Purpose.UPSCALING, scale=scale)


class TinySR(nn.Module):
    """RRDBNet's outline in miniature: pixel-unshuffle for x2 / x1 (so inputs must be even / a
    multiple of 4), a stack of 3x3 convs, pixel-shuffle up, plus a nearest-upsampled skip so the
    output is an image. Receptive radius: ``depth + 2`` convs x the unshuffle factor, in input px."""

    def __init__(self, scale: int, depth: int = 4, ch: int = 8):
        super().__init__()
        self.descriptor = _sr_descriptor(scale)
        self.scale = scale
        self.unshuffle = {2: 2, 1: 4}.get(scale, 1)
        up = scale * self.unshuffle
        self.first = nn.Conv2d(3 * self.unshuffle**2, ch, 3, padding=1)
        self.body = nn.ModuleList(nn.Conv2d(ch, ch, 3, padding=1) for _ in range(depth))
        self.last = nn.Conv2d(ch, 3 * up**2, 3, padding=1)
        self.up = up

    def forward(self, x):  # (b, 3, h, w) -> (b, 3, s*h, s*w)
        skip = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        feat = self.first(F.pixel_unshuffle(x, self.unshuffle))
        for conv in self.body:
            feat = F.leaky_relu(conv(feat), 0.2)
        return skip + 0.3 * F.pixel_shuffle(self.last(feat), self.up)


class RedHalf(nn.Module):
    """Nearest x2 upsampling that halves the red (first, RGB) channel: exposes the channel order."""

    descriptor = _sr_descriptor(2)

    def forward(self, x):
        y = F.interpolate(x, scale_factor=2, mode="nearest")
        return y * torch.tensor([0.5, 1.0, 1.0]).view(1, 3, 1, 1)


def _img(h, w, c=3, seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    img = rng.integers(0, top + 1, (h, w, c) if c else (h, w)).astype(dtype)
    return cv2.GaussianBlur(img, (5, 5), 0)  # an image-like mix of smooth and detailed


def _rgb_tensor(img):
    return torch.from_numpy(img[:, :, ::-1].astype(np.float32).copy() / 255).permute(2, 0, 1)[None]


@pytest.mark.parametrize("scale", [2, 4, 1])
def test_tiled_equals_untiled(scale):
    model = TinySR(scale).eval()
    radius = (len(model.body) + 2) * model.unshuffle  # receptive radius in input pixels
    img = _img(37, 51)  # odd sizes: mod-pad (x2, x1) and ragged last tiles
    x = _rgb_tensor(img)
    full = Upsampler(model).upscale_tensor(x)
    for tile in (9, 20, 64):  # 9: off the x2 / x1 grid (rounded up); 64: one tile
        # context = the receptive radius, no more: enough for equality by design
        up = Upsampler(model, tile=tile, tile_pad=radius)
        # before quantisation: equal up to float noise (different conv sizes, same sums)
        assert (up.upscale_tensor(x) - full).abs().max() < 1e-5
    tiled, plain = Upsampler(model, tile=16).enhance(img), Upsampler(model).enhance(img)  # default context
    assert tiled.shape == plain.shape == (37 * scale, 51 * scale, 3)
    assert np.abs(tiled.astype(int) - plain.astype(int)).max() <= 1


def test_too_little_context_shows_seams():
    """The property above is earned: with less context than the receptive field, tiles differ."""
    model = TinySR(2).eval()
    x = _rgb_tensor(_img(37, 51))
    full = Upsampler(model).upscale_tensor(x)
    seamy = Upsampler(model, tile=16, tile_pad=2).upscale_tensor(x)
    assert (seamy - full).abs().max() > 1e-3


def test_tiles_bound_the_network_input():
    model = TinySR(4).eval()
    sizes = []
    model.register_forward_hook(lambda m, inp, out: sizes.append(tuple(inp[0].shape[2:])))
    Upsampler(model, tile=16, tile_pad=6).enhance(_img(50, 70))
    assert len(sizes) == 4 * 5  # ceil(50/16) x ceil(70/16) tiles
    assert max(max(s) for s in sizes) <= 16 + 2 * 6


def test_outscale():
    up = Upsampler(TinySR(2).eval())
    img = _img(21, 30)
    native = up.enhance(img)
    assert np.array_equal(up.enhance(img, outscale=2), native)  # the network's own factor: no resize
    for outscale in (3, 1.5, 1):
        out = up.enhance(img, outscale=outscale)
        assert out.shape == (int(21 * outscale), int(30 * outscale), 3) and out.dtype == np.uint8
        ref = cv2.resize(native, (int(30 * outscale), int(21 * outscale)), interpolation=cv2.INTER_LANCZOS4)
        assert np.array_equal(out, ref)


def test_channel_order_and_value_range():
    img = _img(10, 12)
    out = Upsampler(RedHalf()).enhance(img)
    big = img.repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(out[..., :2], big[..., :2])  # B, G through
    assert np.abs(out[..., 2].astype(int) - np.round(big[..., 2] / 2)).max() == 0  # R (last in BGR) halved


def test_grey_rgba_16bit_keep_their_kind():
    up = Upsampler(RedHalf())
    grey = _img(10, 12, c=0)
    out = up.enhance(grey)
    assert out.shape == (20, 24) and out.dtype == np.uint8
    # grey -> RGB -> BGR2GRAY weights: 0.299 * R/2 + 0.587 G + 0.114 B
    expected = np.round(grey.astype(np.float64) * (0.299 * 0.5 + 0.587 + 0.114)).repeat(2, 0).repeat(2, 1)
    assert np.abs(out.astype(int) - expected).max() <= 1

    bgra = _img(10, 12, c=4)
    out = up.enhance(bgra)
    assert out.shape == (20, 24, 4) and out.dtype == np.uint8
    # alpha through the network (official default): grey in, luma of the network's output out
    alpha_expected = np.round(bgra[..., 3] * (0.299 * 0.5 + 0.587 + 0.114)).repeat(2, 0).repeat(2, 1)
    assert np.abs(out[..., 3].astype(int) - alpha_expected).max() <= 1
    out = Upsampler(RedHalf(), alpha_upsampler="resize").enhance(bgra)
    alpha_ref = cv2.resize(bgra[..., 3].astype(np.float32) / 255, (24, 20), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(out[..., 3], np.round(alpha_ref * 255).astype(np.uint8))
    assert np.array_equal(out[..., :3], up.enhance(bgra[..., :3]))

    deep = _img(10, 12, dtype=np.uint16)
    tiny = Upsampler(TinySR(2).eval())
    out = tiny.enhance(deep)
    assert out.shape == (20, 24, 3) and out.dtype == np.uint16
    ref8 = tiny.enhance(np.round(deep / 257).astype(np.uint8))
    assert np.abs(out.astype(int) / 257 - ref8).max() < 2  # same picture, finer steps
    dark = np.full((6, 8, 3), 200, np.uint16)  # a 16-bit image that never passes 256 stays 16-bit
    assert Upsampler(RedHalf()).enhance(dark).dtype == np.uint16


def test_pre_pad_only_touches_the_border():
    model = TinySR(4, depth=2).eval()
    img = _img(24, 28)
    plain = Upsampler(model).enhance(img).astype(int)
    padded = Upsampler(model, pre_pad=6).enhance(img).astype(int)
    assert padded.shape == plain.shape
    radius = 4 * 4  # (depth + 2) convs, x4 output pixels
    assert np.array_equal(padded[: -radius - 4, : -radius - 4], plain[: -radius - 4, : -radius - 4])
    assert not np.array_equal(padded, plain)  # ...but the right / bottom border does change


def test_scale_comes_from_the_descriptor_only():
    conv = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.PixelShuffle(2))
    with pytest.raises(TypeError, match="descriptor"):
        Upsampler(conv)  # an unknown network says what it is, or is refused
    conv.descriptor = _sr_descriptor(2)
    assert Upsampler(conv).enhance(_img(9, 11)).shape == (18, 22, 3)
    disagreeing = TinySR(4)
    disagreeing.scale = 2  # a stray attribute cannot disagree with what the network declares
    assert Upsampler(disagreeing).scale == 4
    with pytest.raises(ValueError, match="upsampler"):
        Upsampler(_face_module())  # a face network is no upsampler


def _face_module() -> nn.Module:
    module = nn.Conv2d(3, 3, 1)
    module.descriptor = ModelDescriptor("Face", Purpose.FACE_RESTORATION, input_size=64)
    return module
