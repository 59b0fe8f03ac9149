"""facexlib networks: RetinaFace (resnet50 / mobile0.25) and ParseNet names, shapes, forward, detection."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from facerestore.archs.parsenet import ConvLayer, ParseNet
from facerestore.archs.retinaface import AnchorHead, Bottleneck, RetinaFace
from facerestore.models.arch_detect.facexlib import RULES

SPECS = Path(__file__).resolve().parents[1] / ".." / "shared" / "specs" / "checkpoints"
RETINA_RULE, PARSE_RULE = RULES


def _spec(name: str) -> dict[str, list[int]]:
    path = SPECS / name
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return json.loads(path.read_text())["entries"]


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturb every float entry (BN statistics too) so a skipped key would change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for v in module.state_dict().values():
            if v.is_floating_point():
                v.add_(0.05 * torch.randn(v.shape, generator=g))
                if v.ndim == 1:
                    v.abs_()  # keeps running_var positive
    return module.eval()


@pytest.fixture(scope="module")
def r50() -> RetinaFace:
    return RetinaFace("resnet50").eval()


# ---- names and shapes ---------------------------------------------------------------------------

def test_mobilenet_entries_match_official_spec():
    spec = _spec("RetinaFace-mobilenet0.25.json")
    ours = _shapes(RetinaFace("mobile0.25"))
    assert list(ours) == list(spec)
    assert ours == spec


def test_parsenet_entries_match_official_spec():
    spec = _spec("ParseNet-parsing_parsenet.json")
    ours = _shapes(ParseNet(in_size=512, out_size=512, parsing_ch=19))
    assert list(ours) == list(spec)
    assert ours == spec


def _torchvision_resnet50_body() -> dict[str, list[int]]:
    """Entries torchvision's resnet50 (v1.5) has up to layer4, under ``body.``, written from its rule."""
    def bn(prefix: str, c: int) -> dict[str, list[int]]:
        return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
                f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}

    entries = {"body.conv1.weight": [64, 3, 7, 7], **bn("body.bn1", 64)}
    c_in = 64
    for layer, (blocks, width) in enumerate(zip([3, 4, 6, 3], [64, 128, 256, 512], strict=True), start=1):
        for b in range(blocks):
            p = f"body.layer{layer}.{b}"
            entries |= {f"{p}.conv1.weight": [width, c_in, 1, 1], **bn(f"{p}.bn1", width),
                        f"{p}.conv2.weight": [width, width, 3, 3], **bn(f"{p}.bn2", width),
                        f"{p}.conv3.weight": [4 * width, width, 1, 1], **bn(f"{p}.bn3", 4 * width)}
            if b == 0:
                entries |= {f"{p}.downsample.0.weight": [4 * width, c_in, 1, 1], **bn(f"{p}.downsample.1", 4 * width)}
            c_in = 4 * width
    return entries


def test_resnet50_body_follows_torchvision_naming(r50):
    ours = _shapes(r50)
    body = {k: v for k, v in ours.items() if k.startswith("body.")}
    assert body == _torchvision_resnet50_body()
    assert [len(getattr(r50.body, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]
    # torchvision resnet50 has 25,557,032 parameters, of which fc holds 2048 * 1000 + 1000.
    assert sum(p.numel() for n, p in r50.named_parameters() if n.startswith("body.")) == 25_557_032 - 2_049_000
    # v1.5: the stride sits on the 3x3 conv, not the first 1x1.
    assert r50.body.layer2[0].conv1.stride == (1, 1) and r50.body.layer2[0].conv2.stride == (2, 2)


def test_resnet50_neck_and_heads(r50):
    ours = _shapes(r50)
    assert ours["fpn.output1.0.weight"] == [256, 512, 1, 1]
    assert ours["fpn.output3.0.weight"] == [256, 2048, 1, 1]
    assert ours["ssh1.conv3X3.0.weight"] == [128, 256, 3, 3]
    assert ours["ssh3.conv7x7_3.0.weight"] == [64, 64, 3, 3]
    assert ours["ClassHead.0.conv1x1.weight"] == [4, 256, 1, 1]
    assert ours["BboxHead.1.conv1x1.weight"] == [8, 256, 1, 1]
    assert ours["LandmarkHead.2.conv1x1.weight"] == [20, 256, 1, 1]
    spec = SPECS / "RetinaFace-mobilenet0.25.json"
    if spec.is_file():  # same neck/head names as the mobilenet file
        mobile = [k for k in json.loads(spec.read_text())["entries"] if not k.startswith("body.")]
        assert [k for k in ours if not k.startswith("body.")] == mobile


# ---- forward pieces against direct formulas -----------------------------------------------------

def test_bottleneck_matches_functional_v15():
    block = _randomize(Bottleneck(16, 8, stride=2))
    x = torch.randn(2, 16, 9, 11)

    def bn(y, m):
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    y = F.relu(bn(F.conv2d(x, block.conv1.weight), block.bn1))
    y = F.relu(bn(F.conv2d(y, block.conv2.weight, stride=2, padding=1), block.bn2))
    y = bn(F.conv2d(y, block.conv3.weight), block.bn3)
    short = bn(F.conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1])
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(y + short), rtol=1e-5, atol=1e-5)


def test_anchor_head_flattens_location_major_anchor_minor():
    head = AnchorHead(6, values=4, anchors=2)
    x = torch.randn(1, 6, 3, 5)
    with torch.no_grad():
        out, conv = head(x), head.conv1x1(x)
    assert out.shape == (1, 3 * 5 * 2, 4)
    i, j, a = 2, 3, 1  # prior index (i * W + j) * anchors + a
    torch.testing.assert_close(out[0, (i * 5 + j) * 2 + a], conv[0, 4 * a:4 * a + 4, i, j])


@pytest.mark.parametrize("name", ["mobile0.25", "resnet50"])
def test_retinaface_forward_shapes_and_softmax(name, r50):
    net = _randomize(r50 if name == "resnet50" else RetinaFace(name))
    h, w = 50, 70
    with torch.no_grad():
        loc, conf, landmarks = net(torch.randn(1, 3, h, w) * 50)
    priors = sum(math.ceil(h / s) * math.ceil(w / s) * 2 for s in (8, 16, 32))
    assert loc.shape == (1, priors, 4) and conf.shape == (1, priors, 2) and landmarks.shape == (1, priors, 10)
    torch.testing.assert_close(conf.sum(-1), torch.ones(1, priors))


def test_parsenet_conv_layer_is_reflect_pad_conv_norm_act():
    layer = _randomize(ConvLayer(4, 6, 3, scale="down", norm_type="bn", relu_type="LeakyReLU"))
    assert layer.conv2d.bias is None  # BN layers drop the conv bias, as the official one does
    x = torch.randn(1, 4, 8, 8)
    y = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="reflect"), layer.conv2d.weight, stride=2)
    n = layer.norm.norm
    y = F.leaky_relu(F.batch_norm(y, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps), 0.2)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), y)


def test_parsenet_forward_shapes():
    net = ParseNet(in_size=64, out_size=128, min_feat_size=16, base_ch=8, parsing_ch=5, res_depth=2,
                   ch_range=(8, 32)).eval()
    with torch.no_grad():
        mask, img = net(torch.randn(1, 3, 64, 64))
    assert mask.shape == (1, 5, 128, 128) and img.shape == (1, 3, 128, 128)


# ---- loading and detection rules ----------------------------------------------------------------

def _roundtrip(net: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    saved = {prefix + k: v.clone() for k, v in net.state_dict().items()}
    return {k.removeprefix("module."): v for k, v in saved.items()}


@pytest.mark.parametrize("name", ["mobile0.25", "resnet50"])
def test_retinaface_rule_and_strict_roundtrip(name, r50):
    net = _randomize(r50 if name == "resnet50" else RetinaFace(name), seed=3)
    sd = _roundtrip(net, prefix="module.")  # the R50 release is a DataParallel dump
    kwargs = RETINA_RULE.detect_kwargs(sd)
    assert kwargs == {"network_name": name}
    assert PARSE_RULE.detect_kwargs(sd) is None
    loaded = RETINA_RULE.module_class(**kwargs).eval()
    loaded.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 40, 48) * 50
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs", [
    dict(in_size=64, out_size=64, base_ch=32, parsing_ch=7, res_depth=2),
    dict(in_size=128, out_size=64, base_ch=32, parsing_ch=19, res_depth=1, ch_range=(32, 64), norm_type="gn",
         relu_type="PReLU"),
    dict(in_size=32, out_size=128, base_ch=64, parsing_ch=3, res_depth=3, ch_range=(48, 256)),
])
def test_parsenet_rule_roundtrip(kwargs):
    net = _randomize(ParseNet(**kwargs), seed=1)
    sd = _roundtrip(net)
    found = PARSE_RULE.detect_kwargs(sd)
    assert RETINA_RULE.detect_kwargs(sd) is None
    expected = dict(min_feat_size=32, ch_range=(32, 256), norm_type="bn", relu_type="LeakyReLU") | kwargs
    assert found == expected
    loaded = ParseNet(**found).eval()
    loaded.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, kwargs["in_size"], kwargs["in_size"])
    with torch.no_grad():
        for a, b in zip(net(x), loaded(x), strict=True):
            assert torch.equal(a, b)


def test_released_parsenet_kwargs_detected():
    sd = ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict()
    assert PARSE_RULE.detect_kwargs(sd) == dict(in_size=512, out_size=512, min_feat_size=32, base_ch=64,
                                                parsing_ch=19, res_depth=10, ch_range=(32, 256),
                                                norm_type="bn", relu_type="LeakyReLU")


def test_rules_reject_other_families():
    other = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "body.0.rdb1.conv1.weight": torch.zeros(32, 64, 3, 3)}
    assert RETINA_RULE.detect_kwargs(other) is None
    assert PARSE_RULE.detect_kwargs(other) is None
