"""In-place activations and sums: same values, and training still differentiates correctly.

The forwards overwrite fresh tensors (conv / norm outputs) where autograd allows, because new
full-size tensors cost page faults on CPU. An in-place op on a tensor that autograd saved fails
only at backward time, and a wrong shortcut could silently change gradients, so every touched
network is checked in train mode:

* the forward with autograd gives exactly the values of the no-grad forward (which takes every
  in-place shortcut);
* the gradients (and the second derivatives of the R1 and path-length penalties) agree with
  central finite differences in float64 along a random direction in parameter and input space.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from facerestore.archs import parsenet, restoreformer, retinaface
from facerestore.archs.discriminators import FacialComponentDiscriminator, ResBlock, StyleGAN2Discriminator
from facerestore.archs.gfpgan import GFPGANBilinear, GFPGANv1, GFPGANv1Clean
from facerestore.archs.ops import fused_leaky_relu
from facerestore.archs.rrdbnet import RRDBNet
from facerestore.archs.stylegan2 import StyleGAN2Generator, StyleGAN2GeneratorClean

TINY_GFPGAN = dict(out_size=32, num_style_feat=32, narrow=1 / 16, num_mlp=2, input_is_latent=True, different_w=True,
                   sft_half=True, fix_decoder=False)


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """Move every float parameter and buffer off its (often zero) initial value, in float64."""
    model = model.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.add_(0.1 * torch.randn(t.shape, generator=g, dtype=t.dtype))
    return model.train()


def assert_grads_match_finite_differences(model: nn.Module, loss_fn: Callable[[], Tensor],
                                          inputs: tuple[Tensor, ...] = (), *, needs_grad_mode: bool = False,
                                          eps: float = 1e-6, rtol: float = 1e-5) -> None:
    """Backward's directional derivative of ``loss_fn()`` vs. its central difference (float64).

    The difference quotient is evaluated without autograd (every in-place path taken) unless the
    loss itself differentiates (``needs_grad_mode``, e.g. R1).
    """
    tensors = [p for p in model.parameters() if p.requires_grad] + list(inputs)
    for t in tensors:
        t.grad = None
    loss_fn().backward()
    g = torch.Generator().manual_seed(1)
    dirs = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in tensors]
    norm = sum(d.square().sum() for d in dirs).sqrt()
    dirs = [d / norm for d in dirs]  # a unit step in all of parameter and input space
    analytic = sum((t.grad * d).sum().item() for t, d in zip(tensors, dirs, strict=True) if t.grad is not None)
    originals = [t.detach().clone() for t in tensors]

    def loss_at(step: float) -> float:
        with torch.no_grad():
            for t, t0, d in zip(tensors, originals, dirs, strict=True):
                t.copy_(t0 + step * d)
        with contextlib.nullcontext() if needs_grad_mode else torch.no_grad():
            value = loss_fn().item()
        with torch.no_grad():
            for t, t0 in zip(tensors, originals, strict=True):
                t.copy_(t0)
        return value

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert analytic != 0
    assert analytic == pytest.approx(numeric, rel=rtol), (analytic, numeric)


def assert_train_forward_exact(model: nn.Module, forward: Callable[[nn.Module], Tensor]) -> None:
    """float32, train mode: forward with autograd == forward without, bit for bit."""
    model = model.float().train()
    torch.manual_seed(3)
    with_grad = forward(model)
    assert with_grad.requires_grad
    torch.manual_seed(3)
    with torch.no_grad():
        without = forward(model)
    assert torch.equal(with_grad, without)


def _sum_of_outputs(outputs: Tensor | tuple | list) -> Tensor:
    """A loss touching every output with different weights."""
    if isinstance(outputs, Tensor):
        return (outputs * torch.linspace(-1, 2, outputs.numel(), dtype=outputs.dtype).view(outputs.shape)).sum()
    return sum(_sum_of_outputs(o) * (i + 1) for i, o in enumerate(outputs) if o is not None)


# ----------------------------------------------------------------------------- ops
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("inplace", [True, False])
def test_fused_leaky_relu_grads_and_no_grad_aliasing(use_bias: bool, inplace: bool) -> None:
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True) if use_bias else None

    def f(x: Tensor, *b: Tensor) -> Tensor:
        return fused_leaky_relu(x.clone(), b[0] if b else None, inplace=inplace)  # clone: ours to overwrite

    args = (x.requires_grad_(),) + ((bias,) if use_bias else ())
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)
    # Without autograd, inplace=True overwrites x and returns it; inplace=False leaves x alone.
    y = x.detach().clone()
    with torch.no_grad():
        out = fused_leaky_relu(y, None if bias is None else bias.detach(), inplace=inplace)
    expected = torch.nn.functional.leaky_relu(x.detach() + (0 if bias is None else bias.detach().view(1, -1, 1, 1)),
                                              0.2) * 2**0.5
    assert torch.equal(out, expected)
    assert (out.data_ptr() == y.data_ptr()) == inplace
    assert torch.equal(y, expected if inplace else x.detach())


# ----------------------------------------------------------------------------- GFPGAN family
@pytest.mark.parametrize("cls", [GFPGANv1Clean, GFPGANv1, GFPGANBilinear])
@pytest.mark.parametrize("fix_decoder", [False, True])
def test_gfpgan_train_mode_gradients(cls: type, fix_decoder: bool) -> None:
    model = perturbed(cls(**{**TINY_GFPGAN, "fix_decoder": fix_decoder}))
    x = (torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1).requires_grad_()

    def loss() -> Tensor:
        image, rgbs = model(x, randomize_noise=False)
        return _sum_of_outputs([image, *rgbs])

    assert_grads_match_finite_differences(model, loss, (x,))
    assert_train_forward_exact(model, lambda m: m(x.detach().float(), return_rgb=False)[0])  # fresh noise


@pytest.mark.parametrize("cls", [StyleGAN2GeneratorClean, StyleGAN2Generator])
def test_stylegan2_path_length_double_backward(cls: type) -> None:
    g = perturbed(cls(16, num_style_feat=16, num_mlp=2, channel_multiplier=1, narrow=1 / 16))
    z = torch.randn(2, 16, dtype=torch.float64)

    def path_penalty() -> Tensor:  # as StyleGAN2's path-length regulariser: d(image . y)/d latent
        latent = g.get_latent(z)
        image, _ = g([latent], input_is_latent=True, randomize_noise=False)
        y = torch.linspace(-1, 1, image.numel(), dtype=image.dtype).view(image.shape)
        (grad,) = torch.autograd.grad((image * y).sum(), latent, create_graph=True)
        return grad.square().sum()

    assert_grads_match_finite_differences(g, path_penalty, needs_grad_mode=True)


def test_discriminators_train_mode_gradients() -> None:
    d = perturbed(StyleGAN2Discriminator(16, channel_multiplier=1, narrow=1 / 32))
    x = torch.randn(4, 3, 16, 16, dtype=torch.float64, requires_grad=True)

    def r1() -> Tensor:  # R1 penalty: second derivatives through fused_leaky_relu and the in-place sums
        (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
        return grad.square().sum()

    assert_grads_match_finite_differences(d, r1, (x,), needs_grad_mode=True)
    assert_grads_match_finite_differences(d, lambda: _sum_of_outputs(d(x)), (x,))
    block = perturbed(ResBlock(4, 8, resample_kernel=None))
    y = torch.randn(2, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    assert_grads_match_finite_differences(block, lambda: _sum_of_outputs(block(y)), (y,))

    f = perturbed(FacialComponentDiscriminator())
    crops = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert_grads_match_finite_differences(f, lambda: _sum_of_outputs(f(crops, return_feats=True)), (crops,))


# ----------------------------------------------------------------------------- other networks
def test_rrdbnet_train_mode_gradients() -> None:
    model = perturbed(RRDBNet(3, 3, scale=2, num_feat=8, num_block=2, num_grow_ch=4))
    x = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert_grads_match_finite_differences(model, lambda: _sum_of_outputs(model(x)), (x,))
    assert_train_forward_exact(model, lambda m: m(x.detach().float()))


def test_retinaface_train_mode_gradients() -> None:
    # mobile0.25 in full; the resnet50 pieces (ReLU bottleneck, slope-0 FPN / SSH) on their own
    model = perturbed(retinaface.RetinaFace("mobile0.25"))
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, requires_grad=True)
    assert_grads_match_finite_differences(model, lambda: _sum_of_outputs(model(x)), (x,))
    assert_train_forward_exact(model, lambda m: torch.cat([o.flatten() for o in m(x.detach().float())]))

    block = perturbed(retinaface.Bottleneck(8, 4, stride=2))
    y = torch.randn(2, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    assert_grads_match_finite_differences(block, lambda: _sum_of_outputs(block(y)), (y,))
    fpn, ssh = perturbed(retinaface.FPN((8, 16, 32), 128)), perturbed(retinaface.SSH(128, 128))
    feats = [torch.randn(2, c, s, s, dtype=torch.float64, requires_grad=True) for c, s in ((8, 4), (16, 2), (32, 1))]
    assert_grads_match_finite_differences(
        nn.ModuleList([fpn, ssh]), lambda: _sum_of_outputs([ssh(p) for p in fpn(feats)]), tuple(feats))


@pytest.mark.parametrize("relu_type", ["LeakyReLU", "relu", "selu", "prelu"])
def test_parsenet_train_mode_gradients(relu_type: str) -> None:
    model = perturbed(parsenet.ParseNet(in_size=16, out_size=16, min_feat_size=8, base_ch=8, res_depth=1,
                                        relu_type=relu_type, ch_range=(8, 16)))
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    assert_grads_match_finite_differences(model, lambda: _sum_of_outputs(model(x)), (x,))
    assert_train_forward_exact(model, lambda m: torch.cat([o.flatten() for o in m(x.detach().float())]))


def test_restoreformer_train_mode_gradients() -> None:
    # The quantiser is piecewise constant (straight-through gradient), so finite differences check
    # the blocks around it; the whole model must still run backward and keep its forward values.
    for block, args in [
        (restoreformer.ResnetBlock(32, 64), (torch.randn(2, 32, 4, 4, dtype=torch.float64, requires_grad=True),)),
        (restoreformer.ResnetBlock(32, 32), (torch.randn(2, 32, 4, 4, dtype=torch.float64, requires_grad=True),)),
        (restoreformer.MultiHeadAttnBlock(32, 2), tuple(torch.randn(2, 32, 3, 3, dtype=torch.float64,
                                                                    requires_grad=True) for _ in range(2))),
    ]:
        block = perturbed(block)
        assert_grads_match_finite_differences(block, lambda b=block, a=args: _sum_of_outputs(b(*a)), args)

    model = restoreformer.RestoreFormer(n_embed=16, embed_dim=8, ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                        attn_resolutions=(8,), resolution=16, z_channels=8, head_size=2)
    model = perturbed(model).float()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert_train_forward_exact(model, lambda m: m(x)[0])
    model(x)[0].square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    # only the encoder's self-attention blocks leave their (query) norm2 unused
    assert {n for n, g in grads.items() if g is None} == {
        n for n in grads if n.startswith("encoder.") and ".attn" in n and ".norm2." in n}


@pytest.mark.parametrize("batch", [1, 2])  # the one-sample (modulated weights) and batch (scaled activations) forms
@pytest.mark.parametrize("equalized", [False, True])
def test_modulated_conv_gradients_both_forms(batch: int, equalized: bool) -> None:
    from facerestore.archs.stylegan2 import StyleConv

    conv = perturbed(StyleConv(4, 6, 3, 8, sample_mode="upsample", equalized=equalized))
    x = torch.randn(batch, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    style = torch.randn(batch, 8, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(batch, 1, 10, 10, dtype=torch.float64)
    assert_grads_match_finite_differences(conv, lambda: _sum_of_outputs(conv(x, style, noise)), (x, style))
