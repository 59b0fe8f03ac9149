"""Training building blocks: roi_align, loss terms, VGG19 features, EMA, gradients through the generator."""
import math

import pytest
import torch

from facerestore.archs.gfpgan import GFPGANv1
from facerestore.archs.vgg import VGG19, VGGFeatureExtractor, vgg19_layer_names
from facerestore.train import losses
from facerestore.train.roi_align import roi_align


def roi_align_direct(img, box, out_h, out_w, sampling_ratio=-1, aligned=False):
    """torchvision's RoIAlign written out per sample point (float64 python loops)."""
    _, c, h, w = img.shape
    b, x1, y1, x2, y2 = [float(v) for v in box]
    off = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = x1 - off, y1 - off, x2 - off, y2 - off
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
        rw, rh = max(rw, 1.0), max(rh, 1.0)
    bh, bw = rh / out_h, rw / out_w
    gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / out_h)
    gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / out_w)
    f = img[int(b)].double()

    def sample(y, x):
        if y < -1 or y > h or x < -1 or x > w:
            return torch.zeros(c, dtype=torch.float64)
        y, x = max(y, 0.0), max(x, 0.0)
        y0, x0 = int(y), int(x)
        if y0 >= h - 1:
            y0 = y1_ = h - 1
            y = float(y0)
        else:
            y1_ = y0 + 1
        if x0 >= w - 1:
            x0 = x1_ = w - 1
            x = float(x0)
        else:
            x1_ = x0 + 1
        ly, lx = y - y0, x - x0
        return ((1 - ly) * (1 - lx) * f[:, y0, x0] + (1 - ly) * lx * f[:, y0, x1_]
                + ly * (1 - lx) * f[:, y1_, x0] + ly * lx * f[:, y1_, x1_])

    out = torch.zeros(c, out_h, out_w, dtype=torch.float64)
    for i in range(out_h):
        for j in range(out_w):
            acc = torch.zeros(c, dtype=torch.float64)
            for iy in range(gh):
                for ix in range(gw):
                    acc += sample(y1 + i * bh + (iy + 0.5) * bh / gh, x1 + j * bw + (ix + 0.5) * bw / gw)
            out[:, i, j] = acc / max(gh * gw, 1)
    return out


@pytest.mark.parametrize("aligned", [False, True])
def test_roi_align_matches_the_direct_formula(aligned):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 12, 10, generator=g, dtype=torch.float64)
    boxes = torch.tensor([[0, 1.3, 2.2, 7.9, 9.5], [1, -2.0, -1.5, 4.0, 3.0], [1, 6.0, 8.0, 14.0, 15.0],
                          [0, 3.0, 3.0, 3.4, 3.2], [1, 0.0, 0.0, 10.0, 12.0]], dtype=torch.float64)
    for out_size, sr in ((3, -1), (5, -1), (2, 2)):
        ours = roi_align(img, boxes, out_size, sampling_ratio=sr, aligned=aligned)
        for k, box in enumerate(boxes):
            ref = roi_align_direct(img, box, out_size, out_size, sr, aligned)
            assert torch.allclose(ours[k], ref, atol=1e-12), (k, out_size)


def test_roi_align_is_exact_on_known_values_and_differentiable():
    img = torch.arange(16.0).view(1, 1, 4, 4)
    # one bin over [0.5, 2.5]^2 with a 2x2 grid: samples at 1 and 2 -> mean of (1,1),(1,2),(2,1),(2,2)
    assert roi_align(img, torch.tensor([[0, 0.5, 0.5, 2.5, 2.5]]), 1).item() == 7.5
    x = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, torch.tensor([[0, 0.7, 1.1, 4.6, 5.2]],
                                                                       dtype=torch.float64), 3), (x,))


def test_loss_terms():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    assert losses.l1(a, b, 0.1).item() == pytest.approx(0.1)
    x = torch.randn(2, 4, 3, 5)
    g = losses.gram_matrix(x)
    assert torch.allclose(g[1], x[1].reshape(4, -1) @ x[1].reshape(4, -1).T / 60)
    pred = torch.tensor([[0.3], [-1.2]])
    assert losses.gan_loss(pred, True, "wgan_softplus", 0.1).item() == pytest.approx(
        0.1 * torch.nn.functional.softplus(-pred).mean().item())
    assert losses.gan_loss(pred, False, "wgan_softplus", 0.1, is_disc=True).item() == pytest.approx(
        torch.nn.functional.softplus(pred).mean().item())  # no weight for discriminators
    assert losses.gan_loss(pred, True, "vanilla").item() == pytest.approx(
        -torch.nn.functional.logsigmoid(pred).mean().item())
    rgbs = [torch.zeros(1, 3, s, s) for s in (8, 16, 32)]
    terms = losses.pyramid_losses(rgbs, torch.ones(1, 3, 32, 32), 2.0)
    assert list(terms) == ["l_p_8", "l_p_16", "l_p_32"] and all(v.item() == pytest.approx(2.0) for v in terms.values())
    # R1 of D(x) = sum(w * x^2) is mean_b sum (2 w x)^2
    w = torch.rand(1, 2, 3, 3)
    img = torch.rand(2, 2, 3, 3, requires_grad=True)
    r1 = losses.r1_penalty((w * img**2).flatten(1).sum(1), img)
    assert torch.allclose(r1, ((2 * w * img) ** 2).flatten(1).sum(1).mean())
    r1.backward()  # twice differentiable
    feats = [torch.rand(1, 4, 6, 6), torch.rand(1, 8, 3, 3)]
    assert losses.component_style_loss(feats, feats).item() == 0


def test_identity_input_is_grey_128():
    seen = []
    net = lambda t: seen.append(t.shape) or t.mean((2, 3))  # noqa: E731
    out = torch.rand(2, 3, 64, 64) * 2 - 1
    losses.identity_loss(net, out, out, 10.0)
    assert seen == [(2, 1, 128, 128), (2, 1, 128, 128)]


def test_ema_update():
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    losses.ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * wa + 0.1 * wb)


def test_vgg19_layout_loads_torchvision_state_dict():
    names = vgg19_layer_names()
    assert names[34] == "conv5_4" and names[2] == "conv1_2" and len(names) == 37
    vgg = VGG19()
    sd = {k: torch.randn_like(v) for k, v in vgg.state_dict().items()}
    assert "features.34.weight" in sd and "features.0.bias" in sd and len(sd) == 32
    sd.update({"classifier.0.weight": torch.zeros(4096, 25088), "classifier.0.bias": torch.zeros(4096)})
    other = VGG19()
    other.load_torchvision(sd)
    assert torch.equal(other.features[34].weight, sd["features.34.weight"])
    ext = VGGFeatureExtractor(["conv1_2", "conv3_4"], range_norm=True, vgg=other)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    feats = ext(x)
    assert list(feats) == ["conv1_2", "conv3_4"] and feats["conv3_4"].shape == (1, 256, 4, 4)
    ref = ((x + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    ref = other.features[2](other.features[1](other.features[0](ref)))
    assert torch.allclose(feats["conv1_2"], ref, atol=1e-6)  # before the ReLU, as BasicSR's names
    assert not any(p.requires_grad for p in ext.parameters())


def test_generator_gradients_match_finite_differences():
    """The arch's in-place shortcuts are off under autograd: gradients are exact (float64)."""
    torch.manual_seed(0)
    net = GFPGANv1(out_size=16, num_style_feat=8, channel_multiplier=1, fix_decoder=False, num_mlp=1,
                   input_is_latent=True, different_w=True, narrow=0.02, sft_half=True).double()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64) * 2 - 1
    target = torch.rand(1, 3, 16, 16, dtype=torch.float64)

    def loss() -> torch.Tensor:
        out, rgbs = net(x, return_rgb=True, randomize_noise=False)
        return (out - target).pow(2).mean() + sum(r.pow(2).mean() for r in rgbs)

    params = [p for p in net.parameters()]
    net.zero_grad()
    loss().backward()
    g = torch.Generator().manual_seed(1)
    dirs = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    analytic = sum((p.grad * d).sum() for p, d in zip(params, dirs, strict=True) if p.grad is not None)
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(params, dirs, strict=True):
            p.add_(eps * d)
        up = loss()
        for p, d in zip(params, dirs, strict=True):
            p.sub_(2 * eps * d)
        down = loss()
    numeric = (up - down) / (2 * eps)
    assert analytic.item() == pytest.approx(numeric.item(), rel=1e-6)
