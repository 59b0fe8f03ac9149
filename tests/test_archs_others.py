"""RRDBNet (Real-ESRGAN), ResNetArcFace and RestoreFormer: official names and shapes, detection
round trips, and behaviour pinned by small models and direct reference formulas."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facerestore.models.arch_detect import others
from facerestore.models.arch_detect.others import RULES, detect_arcface, detect_restoreformer, detect_rrdbnet
from facerestore.archs.arcface import ResNetArcFace
from facerestore.archs.restoreformer import MultiHeadAttnBlock, RestoreFormer, VectorQuantizer
from facerestore.archs.rrdbnet import RRDBNet

SPECS = Path(__file__).resolve().parents[1] / ".." / "shared" / "specs" / "checkpoints"
OUR_SPECS = {
    "RRDBNet-RealESRGAN_x2plus": RRDBNet,
    "RRDBNet-RealESRGAN_x4plus": RRDBNet,
    "ResNetArcFace-arcface_resnet18": ResNetArcFace,
    "RestoreFormer": RestoreFormer,
}
# A small RestoreFormer with attention at its lowest level (512 >> 1 = 256), as the released one.
TINY_RF = dict(n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
               attn_resolutions=(256,), z_channels=16, head_size=4)


def _spec(name: str) -> dict:
    path = SPECS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return json.loads(path.read_text())


def _meta_state_dict(module_class, **kwargs) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return module_class(**kwargs).state_dict()


def _shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


# --- official entry names and shapes -------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OUR_SPECS))
def test_entries_match_official(name: str) -> None:
    spec = _spec(name)
    ours = _shapes(_meta_state_dict(OUR_SPECS[name], **spec["kwargs"]))
    official = {k: tuple(v) for k, v in spec["entries"].items()}
    assert list(ours) == list(official)  # same names, same order
    assert ours == official


@pytest.mark.parametrize("name", sorted(OUR_SPECS))
def test_detects_official_kwargs(name: str) -> None:
    spec = _spec(name)
    sd = {k: torch.empty(v, device="meta") for k, v in spec["entries"].items()}
    claims = {rule.name: rule.detect_kwargs(sd) for rule in RULES}
    assert {n for n, kw in claims.items() if kw is not None} == {spec["class"]}
    detected = claims[spec["class"]]
    if spec["class"] == "RestoreFormer":  # released model = all defaults (head_size cannot be seen)
        assert _shapes(_meta_state_dict(RestoreFormer, **detected)) == _shapes(sd)
        assert detected["ch_mult"] == (1, 2, 2, 4, 4, 8) and detected["attn_resolutions"] == (16,)
    else:
        assert detected == spec["kwargs"]


def test_rules_ignore_other_families() -> None:
    if not SPECS.is_dir():
        pytest.skip(f"{SPECS} is not present")
    others_specs = [p for p in sorted(SPECS.glob("*.json")) if p.stem not in OUR_SPECS]
    assert others_specs
    for path in others_specs:
        sd = {k: torch.empty(v, device="meta") for k, v in json.loads(path.read_text())["entries"].items()}
        assert all(rule.detect_kwargs(sd) is None for rule in RULES), path.stem


def test_rejects_near_misses() -> None:
    sd = dict(RRDBNet(3, 3, num_feat=16, num_block=1, num_grow_ch=8).state_dict())
    assert detect_rrdbnet(sd) is not None
    assert detect_arcface(sd) is None and detect_restoreformer(sd) is None
    sd["conv_up3.weight"] = torch.zeros(16, 16, 3, 3)  # an x8 ESRGAN variant is not this model
    assert detect_rrdbnet(sd) is None
    assert detect_rrdbnet({}) is None


# --- detection round trips -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=16, num_block=2, num_grow_ch=8),
    dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=16, num_block=2, num_grow_ch=8),
    dict(num_in_ch=3, num_out_ch=3, scale=1, num_feat=16, num_block=3, num_grow_ch=12),
    dict(num_in_ch=4, num_out_ch=4, scale=2, num_feat=8, num_block=1, num_grow_ch=4),
    dict(num_in_ch=1, num_out_ch=3, scale=4, num_feat=8, num_block=1, num_grow_ch=4),
])
def test_rrdbnet_detect_round_trip(kwargs: dict) -> None:
    model = RRDBNet(**kwargs).eval()
    detected = detect_rrdbnet(model.state_dict())
    assert detected == kwargs
    clone = RRDBNet(**detected).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, kwargs["num_in_ch"], 8, 12)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [
    dict(block="IRBlock", layers=[2, 2, 2, 2], use_se=False),
    dict(block="IRBlock", layers=[1, 3, 2, 1], use_se=True),
])
def test_arcface_detect_round_trip(kwargs: dict) -> None:
    sd = _meta_state_dict(ResNetArcFace, **kwargs)
    assert detect_arcface(sd) == kwargs


@pytest.mark.parametrize("kwargs", [
    TINY_RF,
    dict(TINY_RF, ch_mult=(1, 1, 2), num_res_blocks=2, attn_resolutions=(128,), out_ch=1, in_channels=1),
    dict(TINY_RF, attn_resolutions=(), enable_mid=False),
    dict(TINY_RF, attn_resolutions=(), enable_mid=True),
])
def test_restoreformer_detect_round_trip(kwargs: dict) -> None:
    detected = detect_restoreformer(_meta_state_dict(RestoreFormer, **kwargs))
    assert detected is not None
    expected = {k: v for k, v in kwargs.items() if k != "head_size"}  # not inferable
    assert {k: detected[k] for k in expected} == expected


def test_restoreformer_resolution_is_only_relative() -> None:
    # Attention at the lowest level of a 64-px model: detection reports the same network at 512.
    model = RestoreFormer(**dict(TINY_RF, resolution=64, attn_resolutions=(32,))).eval()
    detected = detect_restoreformer(model.state_dict())
    assert (detected["resolution"], detected["attn_resolutions"]) == (512, (256,))
    clone = RestoreFormer(**detected, head_size=TINY_RF["head_size"]).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(clone(x)[0], model(x)[0], rtol=0, atol=0)


# --- RRDBNet behaviour ---------------------------------------------------------------------

@pytest.mark.parametrize("scale", [1, 2, 4])
def test_rrdbnet_output_shape_and_batch(scale: int) -> None:
    model = RRDBNet(3, 3, scale=scale, num_feat=16, num_block=2, num_grow_ch=8).eval()
    x = torch.rand(2, 3, 8, 12)
    with torch.no_grad():
        y = model(x)
        y1 = model(x[1:])
    assert y.shape == (2, 3, 8 * scale, 12 * scale)
    torch.testing.assert_close(y[1:], y1, rtol=1e-5, atol=1e-6)


def test_rrdbnet_x2_is_x4_trunk_on_unshuffled_input() -> None:
    # Pins the pixel-unshuffle channel order: channel c*4 + 2*i + j holds x[c, 2h+i, 2w+j].
    x2 = RRDBNet(3, 3, scale=2, num_feat=8, num_block=1, num_grow_ch=4).eval()
    x4 = RRDBNet(12, 3, scale=4, num_feat=8, num_block=1, num_grow_ch=4).eval()
    x4.load_state_dict(x2.state_dict(), strict=True)
    x = torch.rand(1, 3, 6, 8)
    unshuffled = x.view(1, 3, 3, 2, 4, 2).permute(0, 1, 3, 5, 2, 4).reshape(1, 12, 3, 4)
    with torch.no_grad():
        torch.testing.assert_close(x2(x), x4(unshuffled), rtol=0, atol=0)


def test_rrdbnet_rejects_unsupported_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        RRDBNet(3, 3, scale=3)


# --- ResNetArcFace behaviour ---------------------------------------------------------------

@pytest.fixture(scope="module")
def arcface() -> ResNetArcFace:
    torch.manual_seed(0)
    return ResNetArcFace("IRBlock", [1, 1, 1, 1], use_se=True)


def test_arcface_embedding_shape_and_batch(arcface: ResNetArcFace) -> None:
    arcface.eval()
    x = torch.rand(3, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        y = arcface(x)
        y1 = arcface(x[2:])
    assert y.shape == (3, 512)
    torch.testing.assert_close(y[2:], y1, rtol=1e-4, atol=1e-5)


def test_arcface_gradient_reaches_input_in_train_mode(arcface: ResNetArcFace) -> None:
    arcface.train()
    x = (torch.rand(2, 1, 128, 128) * 2 - 1).requires_grad_()
    target = torch.randn(2, 512)
    loss = F.l1_loss(arcface(x), target)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert arcface.conv1.weight.grad is not None and arcface.layer1[0].se.fc[0].weight.grad is not None
    arcface.eval()


def test_arcface_rejects_other_blocks() -> None:
    with pytest.raises(ValueError, match="IRBlock"):
        ResNetArcFace("BasicBlock", [2, 2, 2, 2])


# --- RestoreFormer behaviour ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_rf() -> RestoreFormer:
    torch.manual_seed(0)
    return RestoreFormer(**TINY_RF).eval()


def test_restoreformer_returns_image_and_none(tiny_rf: RestoreFormer) -> None:
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = tiny_rf(x, return_rgb=False, weight=0.5)  # GFPGANer's extra options are ignored
        single = tiny_rf(x[1:])[0]
    assert isinstance(out, tuple) and len(out) == 2 and out[1] is None
    assert out[0].shape == (2, 3, 16, 16)
    torch.testing.assert_close(out[0][1:], single, rtol=1e-4, atol=1e-5)


def test_restoreformer_decoder_attends_to_encoder(tiny_rf: RestoreFormer) -> None:
    # Changing the encoder's middle features alone must change the image (cross-attention used).
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        h, skips = tiny_rf.encoder(x)
        quant = tiny_rf.post_quant_conv(tiny_rf.quantize(tiny_rf.quant_conv(h))[0])
        base = tiny_rf.decoder(quant, skips)
        moved = tiny_rf.decoder(quant, {**skips, "block_1": torch.randn_like(skips["block_1"])})
    assert (base - moved).abs().max() > 1e-4


def test_vector_quantizer_picks_nearest_code() -> None:
    vq = VectorQuantizer(n_e=10, e_dim=4)
    vq.embedding.weight.data.normal_()
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    z_q, loss, idx = vq(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    nearest = torch.cdist(flat, vq.embedding.weight.detach()).argmin(1)
    assert torch.equal(idx.flatten(), nearest)
    torch.testing.assert_close(z_q.detach().permute(0, 2, 3, 1).reshape(-1, 4), vq.embedding.weight[nearest].detach())
    z_q.sum().backward()  # straight-through: d z_q / d z = identity
    torch.testing.assert_close(z.grad, torch.ones_like(z))
    assert loss.item() > 0


def test_multihead_attention_matches_formula() -> None:
    block = MultiHeadAttnBlock(64, head_size=4)
    for p in block.parameters():
        p.data.normal_(0, 0.2)
    x, y = torch.randn(1, 64, 3, 4), torch.randn(1, 64, 3, 4)
    with torch.no_grad():
        out = block(x, y)
        q, k, v = block.q(block.norm2(y)), block.k(block.norm1(x)), block.v(block.norm1(x))
        heads = []
        for hd in range(4):  # channels [16*hd, 16*hd + 16) form head hd
            sl = slice(16 * hd, 16 * hd + 16)
            qh, kh, vh = (t[0, sl].reshape(16, 12) for t in (q, k, v))  # (C/heads, H*W)
            attn = torch.softmax(qh.t() @ kh / math.sqrt(16), dim=1)  # (queries, keys)
            heads.append((attn @ vh.t()).t())
        ref = x + block.proj_out(torch.cat(heads).reshape(1, 64, 3, 4))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_restoreformer_rejects_configs_the_official_forward_cannot_run() -> None:
    with pytest.raises(ValueError, match="lowest resolution"):
        RestoreFormer(**dict(TINY_RF, attn_resolutions=(512,)))
    with pytest.raises(ValueError, match="lowest resolution"):
        RestoreFormer(**dict(TINY_RF, enable_mid=False))
    assert others.detect_restoreformer({}) is None
