"""GFPGAN's loss terms (paper Sec. 3.4), one function each, with BasicSR's arithmetic.

Every function returns a scalar tensor; weights are applied where the official code applies them
(so the same floating-point order and the same logged values).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F


def l1(pred: Tensor, target: Tensor, weight: float = 1.0) -> Tensor:
    """Mean absolute error times ``weight`` (BasicSR ``L1Loss``, reduction 'mean')."""
    return weight * F.l1_loss(pred, target, reduction="none").mean()


def image_pyramid(gt: Tensor, levels: int) -> list[Tensor]:
    """[gt / 2**(levels-1), ..., gt / 2, gt] by repeated bilinear halving (align_corners=False)."""
    pyramid = [gt]
    down = gt
    for _ in range(levels - 1):
        down = F.interpolate(down, scale_factor=0.5, mode="bilinear", align_corners=False)
        pyramid.insert(0, down)
    return pyramid


def pyramid_losses(out_rgbs: Sequence[Tensor], gt: Tensor, weight: float) -> dict[str, Tensor]:
    """Intermediate restoration loss: L1 between the U-Net's RGB output at each scale (8 px up to the
    full size) and the downscaled ground truth, each times ``weight``; keys ``l_p_8``, ``l_p_16``, ..."""
    pyramid = image_pyramid(gt, len(out_rgbs))
    return {f"l_p_{rgb.shape[-1]}": l1(rgb, target) * weight for rgb, target in zip(out_rgbs, pyramid, strict=True)}


def gram_matrix(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, C, C) channel correlations divided by C*H*W."""
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


def _criterion(name: str):
    if name == "l1":
        return lambda a, b: F.l1_loss(a, b)
    if name == "l2":
        return lambda a, b: F.mse_loss(a, b)
    if name == "fro":
        return lambda a, b: torch.norm(a - b, p="fro")
    raise ValueError(f"perceptual criterion {name!r}: use 'l1', 'l2' or 'fro'")


def perceptual_loss(x_feats: Mapping[str, Tensor], gt_feats: Mapping[str, Tensor], layer_weights: Mapping[str, float],
                    weight: float, criterion: str = "l1") -> Tensor:
    """Sum over VGG layers of criterion(feature, gt feature) * layer weight, times ``weight``."""
    crit = _criterion(criterion)
    loss: Tensor | int = 0
    for k in x_feats:
        loss = loss + crit(x_feats[k], gt_feats[k]) * layer_weights[k]
    return loss * weight


def style_loss(x_feats: Mapping[str, Tensor], gt_feats: Mapping[str, Tensor], layer_weights: Mapping[str, float],
               weight: float, criterion: str = "l1") -> Tensor:
    """Sum over VGG layers of criterion(Gram(feature), Gram(gt feature)) * layer weight, times ``weight``."""
    crit = _criterion(criterion)
    loss: Tensor | int = 0
    for k in x_feats:
        loss = loss + crit(gram_matrix(x_feats[k]), gram_matrix(gt_feats[k])) * layer_weights[k]
    return loss * weight


def gan_loss(pred: Tensor, target_is_real: bool, gan_type: str, weight: float = 1.0, is_disc: bool = False,
             real_label: float = 1.0, fake_label: float = 0.0) -> Tensor:
    """BasicSR ``GANLoss``: ``wgan_softplus`` = softplus(-D) for real targets, softplus(D) for fake
    (StyleGAN2's logistic loss); ``vanilla`` = BCE with logits; ``wgan``; ``lsgan``; ``hinge``.
    ``weight`` applies to the generator's loss only (is_disc=False)."""
    if gan_type == "wgan_softplus":
        loss = F.softplus(-pred).mean() if target_is_real else F.softplus(pred).mean()
    elif gan_type == "wgan":
        loss = -pred.mean() if target_is_real else pred.mean()
    elif gan_type in ("vanilla", "lsgan"):
        target = pred.new_ones(pred.size()) * (real_label if target_is_real else fake_label)
        loss = (F.binary_cross_entropy_with_logits(pred, target) if gan_type == "vanilla"
                else F.mse_loss(pred, target))
    elif gan_type == "hinge":
        if is_disc:
            loss = F.relu(1 + (-pred if target_is_real else pred)).mean()
        else:
            loss = -pred.mean()
    else:
        raise ValueError(f"gan_type {gan_type!r}: use wgan_softplus, vanilla, wgan, lsgan or hinge")
    return loss if is_disc else loss * weight


def component_style_loss(fake_feats: Sequence[Tensor], real_feats: Sequence[Tensor]) -> Tensor:
    """Gram-matrix L1 between a component discriminator's two feature maps on the restored and the
    real crop (real detached); the first map counts half, as in the official code."""
    return (l1(gram_matrix(fake_feats[0]), gram_matrix(real_feats[0].detach())) * 0.5
            + l1(gram_matrix(fake_feats[1]), gram_matrix(real_feats[1].detach())))


def gray_resize_for_identity(x: Tensor, size: int = 128) -> Tensor:
    """RGB in [-1, 1] -> (N, 1, size, size) grey (ITU-R 601 weights) as ArcFace expects."""
    gray = (0.2989 * x[:, 0, :, :] + 0.5870 * x[:, 1, :, :] + 0.1140 * x[:, 2, :, :]).unsqueeze(1)
    return F.interpolate(gray, (size, size), mode="bilinear", align_corners=False)


def identity_loss(identity_net: torch.nn.Module, output: Tensor, gt: Tensor, weight: float) -> Tensor:
    """L1 between ArcFace embeddings of the restored and the real face (grey 128 px) times ``weight``."""
    identity_gt = identity_net(gray_resize_for_identity(gt)).detach()
    identity_out = identity_net(gray_resize_for_identity(output))
    return l1(identity_out, identity_gt) * weight


def r1_penalty(real_pred: Tensor, real_img: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of the squared gradient norm of D at real data."""
    grad = torch.autograd.grad(outputs=real_pred.sum(), inputs=real_img, create_graph=True)[0]
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    """ema = decay * ema + (1 - decay) * net, over parameters (buffers are not averaged)."""
    params = dict(net.named_parameters())
    for name, p in ema.named_parameters():
        p.mul_(decay).add_(params[name], alpha=1 - decay)
