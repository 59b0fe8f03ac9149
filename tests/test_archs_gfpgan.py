"""GFPGAN generators, StyleGAN2 variants, the two discriminators, their detection and the converter."""
import inspect
import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from facerestore.archs.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from facerestore.archs.gfpgan import GFPGANBilinear, GFPGANv1, GFPGANv1Clean
from facerestore.archs.ops import _upfirdn2d_ref
from facerestore.archs.stylegan2 import ModulatedConv2d, StyleGAN2Generator, StyleGAN2GeneratorClean
from facerestore.models.arch_detect.gfpgan import RULES
from facerestore.models.convert import bilinear_to_clean
from stand_ins import randomized

SPECS = Path(__file__).resolve().parents[1] / ".." / "shared" / "specs" / "checkpoints"
GFPGANS = [GFPGANv1Clean, GFPGANv1, GFPGANBilinear]
# A 32-px GFPGAN, 32 decoder / 16 U-Net channels: every code path, a few ms per forward.
TINY = dict(out_size=32, num_style_feat=32, narrow=1 / 16, num_mlp=2, input_is_latent=True, different_w=True,
            sft_half=True, fix_decoder=False)


# ----------------------------------------------------------------------------- official layouts
@pytest.mark.parametrize("cls,spec", [
    (GFPGANv1Clean, "GFPGANv1Clean-v1.3-v1.4"), (GFPGANv1, "GFPGANv1-paper"), (GFPGANBilinear, "GFPGANBilinear"),
    (StyleGAN2Discriminator, "StyleGAN2Discriminator-512-c1"),
    (FacialComponentDiscriminator, "FacialComponentDiscriminator"),
])
def test_entries_match_official(cls, spec):
    path = SPECS / f"{spec}.json"
    if not path.is_file():
        pytest.skip("../shared/specs/checkpoints is not present")
    spec = json.loads(path.read_text())
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = cls(**spec["kwargs"])
    entries = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert entries == spec["entries"]
    # and the rules read the official kwargs back (those the state dict determines)
    name, kwargs = detect(model.state_dict())
    assert name == spec["class"]
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    for key, value in kwargs.items():  # given by the spec, else the constructor default
        assert value == spec["kwargs"].get(key, defaults[key]), key


# ----------------------------------------------------------------------------- detection
def detect(sd):
    found = [(r.name, kw) for r in RULES if (kw := r.detect_kwargs(sd)) is not None]
    assert len(found) == 1, f"rules matching: {[n for n, _ in found]}"
    return found[0]


GEN_VARIANTS = [
    dict(out_size=64, channel_multiplier=2, narrow=0.5, sft_half=True, different_w=True, num_mlp=8,
         num_style_feat=512),
    dict(out_size=128, channel_multiplier=1, narrow=1, sft_half=False, different_w=False, num_mlp=2,
         num_style_feat=64),
    dict(out_size=64, channel_multiplier=1, narrow=0.25, sft_half=True, different_w=False, num_mlp=4,
         num_style_feat=128),
    dict(out_size=256, channel_multiplier=2, narrow=0.5, sft_half=False, different_w=True, num_mlp=1,
         num_style_feat=32),
]


def _detectable(cls, kwargs) -> bool:
    """GFPGANv1 and GFPGANBilinear share their layout; detection pairs them with cm 1 / 2."""
    cm = kwargs["channel_multiplier"]
    return not (cls is GFPGANv1 and cm != 1 or cls is GFPGANBilinear and cm == 1)


@pytest.mark.parametrize("cls, kwargs", [(c, k) for c in GFPGANS for k in GEN_VARIANTS if _detectable(c, k)])
def test_detection_round_trip_gfpgan(cls, kwargs):
    with torch.device("meta"):
        sd = cls(**kwargs).state_dict()
    name, detected = detect(sd)
    assert name == cls.__name__
    assert {k: detected[k] for k in kwargs} == kwargs
    assert detected["input_is_latent"] is True


@pytest.mark.parametrize("kwargs", [dict(out_size=64, channel_multiplier=2, narrow=0.5),
                                    dict(out_size=128, channel_multiplier=1, narrow=0.25),
                                    dict(out_size=512, channel_multiplier=1, narrow=1)])
def test_detection_round_trip_discriminator(kwargs):
    with torch.device("meta"):
        sd = StyleGAN2Discriminator(**kwargs).state_dict()
    assert detect(sd) == ("StyleGAN2Discriminator", kwargs)


def test_detection_rejects_foreign_state_dicts():
    with torch.device("meta"):
        generator_only = StyleGAN2GeneratorClean(64, 64, 2, narrow=0.25).state_dict()
    assert all(r.detect_kwargs(generator_only) is None for r in RULES)
    facial = FacialComponentDiscriminator().state_dict()
    facial.pop("conv5.1.bias")
    assert all(r.detect_kwargs(facial) is None for r in RULES)
    assert all(r.detect_kwargs({"conv_first.weight": torch.zeros(64, 3, 3, 3)}) is None for r in RULES)


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("cls", GFPGANS)
def test_strict_load_round_trip(cls):
    a = randomized(cls(**TINY), seed=1)
    b = cls(**TINY).eval()
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ya, ra = a(x, randomize_noise=False)
        yb, rb = b(x, randomize_noise=False)
    assert torch.equal(ya, yb) and all(torch.equal(p, q) for p, q in zip(ra, rb, strict=True))
    assert ya.shape == (2, 3, 32, 32) and [r.shape[-1] for r in ra] == [8, 16, 32]


@pytest.mark.parametrize("cls", GFPGANS)
def test_noise_modes_and_batch_consistency(cls):
    model = randomized(cls(**TINY))
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        fixed = model(x, return_rgb=False, randomize_noise=False)[0]
        assert torch.equal(fixed, model(x, return_rgb=False, randomize_noise=False)[0])
        for i in range(3):  # sample i of the batch equals the single-sample run
            torch.testing.assert_close(model(x[i:i + 1], randomize_noise=False)[0], fixed[i:i + 1],
                                       atol=1e-4, rtol=1e-4)  # batched conv kernels reorder sums
        torch.manual_seed(7)
        noisy = model(x, return_rgb=False)[0]
        torch.manual_seed(7)
        assert torch.equal(noisy, model(x, return_rgb=False)[0])  # the global seed reproduces the noise
        assert not torch.allclose(noisy, fixed)  # and the noise is fresh, not the stored maps
        assert model(x, return_rgb=False)[1] == []


@pytest.mark.parametrize("cls", GFPGANS)
def test_train_mode_backward(cls):
    model = cls(**{**TINY, "fix_decoder": False}).train()
    image, rgbs = model(torch.rand(2, 3, 32, 32) * 2 - 1)
    (image.square().mean() + sum(r.abs().mean() for r in rgbs)).backward()
    # every parameter but the style MLP (unused: the U-Net's code is already a latent) gets a gradient
    grads = {n: p.grad for n, p in model.named_parameters() if ".style_mlp." not in n}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["stylegan_decoder.style_convs.0.modulated_conv.weight"].abs().sum() > 0
    assert grads["conv_body_down.0.conv2.weight" if cls is GFPGANv1Clean else
                 "conv_body_down.0.conv2.1.weight"].abs().sum() > 0
    frozen = cls(**{**TINY, "fix_decoder": True})
    assert not any(p.requires_grad for p in frozen.stylegan_decoder.parameters())
    assert all(p.requires_grad for n, p in frozen.named_parameters() if not n.startswith("stylegan_decoder."))


def test_constructor_never_reads_files():
    with pytest.warns(UserWarning, match="decoder_load_path is ignored"):
        GFPGANv1Clean(**TINY, decoder_load_path="/nonexistent/StyleGAN2.pth")


def test_bilinear_to_clean_is_equivalent():
    kwargs = dict(out_size=64, num_style_feat=64, channel_multiplier=2, narrow=0.125, num_mlp=3, input_is_latent=True,
                  different_w=True, sft_half=True, fix_decoder=False)
    bilinear = randomized(GFPGANBilinear(**kwargs))
    clean = GFPGANv1Clean(**kwargs).eval()
    clean.load_state_dict(bilinear_to_clean(bilinear.state_dict()), strict=True)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        yb, rb = bilinear(x, randomize_noise=False)
        yc, rc = clean(x, randomize_noise=False)
        torch.testing.assert_close(yc, yb, atol=1e-4, rtol=1e-4)
        for p, q in zip(rc, rb, strict=True):
            torch.testing.assert_close(p, q, atol=1e-4, rtol=1e-4)
        # the style MLP (unused by GFPGAN with input_is_latent) converts too
        z = torch.randn(2, 64)
        torch.testing.assert_close(clean.stylegan_decoder.get_latent(z), bilinear.stylegan_decoder.get_latent(z),
                                   atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="unexpected entry"):
        bilinear_to_clean(clean.state_dict())


def test_fir_upsampling_conv_matches_reference():
    """The original StyleGAN2's modulated up-conv: per-sample transposed conv, then FIR blur."""
    conv = randomized(ModulatedConv2d(4, 5, 3, 8, sample_mode="upsample", resample_kernel=(1, 3, 3, 1)))
    x, style = torch.randn(2, 4, 6, 6), torch.randn(2, 8)
    k = torch.tensor([1.0, 3, 3, 1])
    blur = (k[:, None] * k[None, :]) / 64 * 4  # normalised, times up**2
    with torch.no_grad():
        out = conv(x, style)
        for i in range(2):  # direct: modulate, demodulate, conv_transpose, upfirdn reference
            w = conv.weight[0] / math.sqrt(4 * 9) * conv.modulation(style[i:i + 1]).view(1, 4, 1, 1)
            w = w * torch.rsqrt(w.square().sum([1, 2, 3], keepdim=True) + 1e-8)
            ref = _upfirdn2d_ref(F.conv_transpose2d(x[i:i + 1], w.transpose(0, 1), stride=2), blur, pad=(1, 1))
            torch.testing.assert_close(out[i:i + 1], ref, atol=1e-5, rtol=1e-5)
    assert out.shape == (2, 5, 12, 12)


def test_stylegan2_generator_mixing_and_truncation():
    g = randomized(StyleGAN2Generator(16, num_style_feat=16, num_mlp=2, narrow=1 / 32))
    z = [torch.randn(2, 16), torch.randn(2, 16)]
    with torch.no_grad():
        image, latent = g(z, inject_index=2, randomize_noise=False, return_latents=True)
        assert image.shape == (2, 3, 16, 16) and latent.shape == (2, g.num_latent, 16)
        w0, w1 = g.get_latent(z[0]), g.get_latent(z[1])
        assert torch.allclose(latent[:, 1], w0) and torch.allclose(latent[:, 2], w1)
        mean = g.mean_latent(64)
        truncated = g([w0], input_is_latent=True, truncation=0.0, truncation_latent=mean, randomize_noise=False)[0]
        torch.testing.assert_close(truncated, g([mean.expand(2, -1)], input_is_latent=True, randomize_noise=False)[0])


# ----------------------------------------------------------------------------- discriminators
def test_stylegan2_discriminator_r1_double_backward():
    d = randomized(StyleGAN2Discriminator(16, channel_multiplier=1, narrow=1 / 32)).train()
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    out = d(x)
    assert out.shape == (4, 1)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    grad.square().sum().backward()  # R1 penalty: needs second derivatives of upfirdn2d / fused_lrelu
    # all weights get a gradient (biases of the last layers do not reach d(out)/dx)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for n, p in d.named_parameters() if "weight" in n)
    assert d.conv_body[1].conv2[1].weight.grad.abs().sum() > 0


def test_stddev_groups():
    """Minibatch stddev: with a group of 2, samples 0 and 2 share statistics, as do 1 and 3."""
    d = randomized(StyleGAN2Discriminator(8, narrow=1 / 32, stddev_group=2))
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        out = d(x)
        swapped = x[[2, 1, 0, 3]]  # swapping within a group changes nothing but the order
        torch.testing.assert_close(d(swapped), out[[2, 1, 0, 3]])
        assert not torch.allclose(d(x[[1, 0, 2, 3]]), out[[1, 0, 2, 3]])


def test_facial_component_discriminator():
    d = FacialComponentDiscriminator().eval()
    with torch.no_grad():
        out, feats = d(torch.randn(2, 3, 40, 40), return_feats=True)
        assert out.shape == (2, 1, 10, 10) and [f.shape for f in feats] == [(2, 128, 20, 20), (2, 256, 10, 10)]
        assert d(torch.randn(1, 3, 40, 40))[1] is None


def test_base_constructors_are_keyword_only():
    # narrow and lr_mlp are both floats; a positional swap must not build a wrong network silently
    from facerestore.archs.gfpgan import _GFPGAN, _CleanKit
    from facerestore.archs.stylegan2 import _StyleGAN2Base

    with pytest.raises(TypeError):
        _StyleGAN2Base(16, 16, 1, 1, 0.5, 0.01, False, equalized=True, resample_kernel=None)
    decoder = StyleGAN2GeneratorClean(out_size=16, num_style_feat=16, num_mlp=1, channel_multiplier=1, narrow=1 / 16)
    with pytest.raises(TypeError):
        _GFPGAN(_CleanKit(), decoder, 16, 16, 1, None, False, True, True, 1 / 16, True)
    g = _StyleGAN2Base(out_size=16, num_style_feat=16, num_mlp=1, channel_multiplier=1, narrow=0.5, lr_mlp=0.01,
                       sft_half=False, equalized=True, resample_kernel=None)
    assert g.channels[16] == 256 and g.style_mlp[1].lr_mul == 0.01


@pytest.mark.parametrize("kwargs", [dict(equalized=False), dict(equalized=True, sample_mode="upsample"),
                                    dict(equalized=False, sample_mode="upsample", demodulate=False),
                                    dict(equalized=True, sample_mode="upsample", resample_kernel=(1, 3, 3, 1))])
@pytest.mark.parametrize("train", [False, True])
def test_modulated_conv_batch_form_equals_one_sample_form(kwargs, train, monkeypatch):
    # one sample, and a batch in train mode: the official per-sample weights (a grouped conv, so
    # training steps round as the official ones); a batch in eval mode: the style scales the
    # activations and one shared weight runs the whole batch. Same function: equal to float64 rounding.
    from facerestore.archs import stylegan2
    from facerestore.archs.stylegan2 import ModulatedConv2d

    conv = randomized(ModulatedConv2d(8, 4, 3, 16, **kwargs)).double().train(train)
    x = torch.randn(3, 8, 6, 6, dtype=torch.float64)
    style = torch.randn(3, 16, dtype=torch.float64)
    groups = []
    for name in ("conv2d", "conv_transpose2d"):
        real = getattr(stylegan2.F, name)
        monkeypatch.setattr(stylegan2.F, name, lambda *a, _real=real, **k: groups.append(k.get("groups", 1))
                            or _real(*a, **k))
    with torch.no_grad():
        batch = conv(x, style)
    assert groups[0] == (3 if train else 1)  # the modulated conv (a blur after it may be grouped too)
    with torch.no_grad():
        singles = torch.cat([conv(x[i:i + 1], style[i:i + 1]) for i in range(3)])
    assert batch.abs().max() > 0.1
    torch.testing.assert_close(batch, singles, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(equalized=False), dict(equalized=True, sample_mode="upsample"),
                                    dict(equalized=False, sample_mode="upsample", demodulate=False),
                                    dict(equalized=True, sample_mode="upsample", resample_kernel=(1, 3, 3, 1))])
def test_folded_weight_norms_are_the_same_function(kwargs):
    # the engines' form (demodulation from the stored weights' norms, one product) against the
    # official per-sample weights: equal to float64 rounding, off by default, not used in training
    conv = randomized(ModulatedConv2d(8, 4, 3, 16, **kwargs)).double().eval()
    assert ModulatedConv2d.fold_weight_norms is False
    x = torch.randn(1, 8, 6, 6, dtype=torch.float64)
    style = torch.randn(1, 16, dtype=torch.float64) * 3
    with torch.no_grad():
        official = conv(x, style)
        conv.fold_weight_norms = True
        folded = conv(x, style)
        conv.train()._folded_weight = None  # training keeps the official order: never called there
        conv(x, style)
        del conv._folded_weight
    assert official.abs().max() > 0.1
    torch.testing.assert_close(folded, official, atol=1e-12, rtol=1e-12)
    with torch.no_grad():
        conv.eval()
        conv.weight.mul_(1.01)  # the folded form reads the weights on every call, not a stale copy
        torch.testing.assert_close(conv(x, style), conv.train()(x, style), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("cls", GFPGANS)
def test_channels_last_is_opt_in_and_close(cls):
    # NHWC on CPU is faster but sums in another order: off by default (official pixels), close when on
    from facerestore.archs.ops import use_channels_last

    model = randomized(cls(**TINY))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert not model.channels_last and not model.stylegan_decoder.channels_last
    with torch.no_grad():
        exact = model(x, randomize_noise=False)
        use_channels_last(model)
        assert model.channels_last and model.stylegan_decoder.channels_last
        fast = model(x, randomize_noise=False)
    for a, b in zip([exact[0], *exact[1]], [fast[0], *fast[1]], strict=True):
        assert b.is_contiguous()  # NCHW out, as the official code
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    model.train()  # and training still differentiates in NHWC
    image, rgbs = model(x.requires_grad_(), randomize_noise=False)
    image.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
