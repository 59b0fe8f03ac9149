"""GFPGAN training (the official ``GFPGANModel``), one iteration per :meth:`GFPGANTrainer.train_step`.

One iteration, as in the paper (Sec. 3.4) and the official code, in this order:

1. generator: restore the degraded batch, then L1 (pixel), the intermediate-restoration pyramid
   L1, perceptual + style (VGG19), adversarial (StyleGAN2 discriminator, ``wgan_softplus``),
   facial-component adversarial + Gram style, identity (ArcFace); one Adam step;
2. EMA of the generator;
3. StyleGAN2 discriminator: logistic loss on real/restored, plus lazy R1 every
   ``net_d_reg_every`` iterations; one Adam step;
4. the three component discriminators (BCE on real crops, ``wgan_softplus`` on restored ones).

Distributed training (torchrun) averages gradients over processes before every optimizer step,
which is what DistributedDataParallel does; doing it by hand keeps R1's double backward, the
toggled ``requires_grad`` and the unused style MLP free of DDP's special cases.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import random
import re
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import Tensor, nn

from ..archs.arcface import ResNetArcFace
from ..archs.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from ..archs.gfpgan import GFPGANBilinear, GFPGANv1, GFPGANv1Clean
from ..archs.vgg import VGG19, VGGFeatureExtractor
from . import losses as L
from .config import TrainConfig
from .roi_align import roi_align

log = logging.getLogger("facerestore.train")

ARCHS: dict[str, type[nn.Module]] = {
    "GFPGANv1": GFPGANv1, "GFPGANv1Clean": GFPGANv1Clean, "GFPGANBilinear": GFPGANBilinear,
    "StyleGAN2Discriminator": StyleGAN2Discriminator, "FacialComponentDiscriminator": FacialComponentDiscriminator,
    "ResNetArcFace": ResNetArcFace,
}
COMPONENTS = ("left_eye", "right_eye", "mouth")


class TrainSetupError(RuntimeError):
    """Training cannot start (missing files, bad options); the message says what to do."""


# ----------------------------------------------------------------------------- small helpers


def build_network(opt: dict) -> nn.Module:
    """An architecture from its option block (``type`` + constructor keywords)."""
    kwargs = dict(opt)
    name = kwargs.pop("type")
    kwargs.pop("decoder_load_path", None)  # read by the trainer (GFPGANTrainer._load_decoder)
    if name not in ARCHS:
        raise TrainSetupError(f"network type {name!r} is not available; choose from {sorted(ARCHS)}")
    try:
        return ARCHS[name](**kwargs)
    except TypeError as e:
        raise TrainSetupError(f"network {name}: {e}") from None


def read_weights(path: str | Path, param_key: str | None = "params") -> dict[str, Tensor]:
    """A state dict from a checkpoint as BasicSR's ``load_network`` reads it: ``param_key`` (falling
    back to 'params'), ``module.`` prefixes stripped; never unpickles code."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    if param_key is not None:
        if param_key not in data and "params" in data:
            param_key = "params"
        if param_key not in data:
            raise TrainSetupError(f"{path}: no '{param_key}' entry (has {sorted(data)[:5]})")
        data = data[param_key]
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in data.items())


def set_requires_grad(nets: Iterable[nn.Module | None], flag: bool) -> None:
    for net in nets:
        if net is not None:
            for p in net.parameters():
                p.requires_grad = flag


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def average_gradients(net: nn.Module, dist: DistInfo) -> None:
    """All-reduce the gradients of ``net`` (mean over processes), in one flat buffer."""
    if not dist.enabled:
        return
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= dist.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def weights_spread(net: nn.Module, dist: DistInfo) -> float:
    """Largest difference between this process's weights and rank 0's, over all processes."""
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    ref = flat.clone()
    torch.distributed.broadcast(ref, 0)
    diff = (flat - ref).abs().max().reshape(1)
    torch.distributed.all_reduce(diff, op=torch.distributed.ReduceOp.MAX)
    return float(diff)


def broadcast_module(net: nn.Module, dist: DistInfo) -> None:
    """Make every process start from rank 0's weights (what DDP does when it wraps a model)."""
    if dist.enabled:
        for t in net.state_dict().values():
            torch.distributed.broadcast(t, 0)


def tensor_to_uint8(x: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8 (BasicSR tensor2img with min_max (-1, 1))."""
    x = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy().transpose(1, 2, 0)
    return (x * 255.0).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (BasicSR calculate_psnr, crop_border 0, RGB)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 * 255.0 / mse))


# ----------------------------------------------------------------------------- the trainer


class GFPGANTrainer:
    """Networks, losses, optimizers and one training iteration of GFPGAN.

    ``load_pretrained=False`` builds every network with its default (seeded) init and reads no
    file: for tests and for loading weights by hand (``benchmarks/check_training.py``).
    """

    def __init__(self, cfg: TrainConfig, device: str | torch.device = "cpu", dist: DistInfo | None = None,
                 load_pretrained: bool = True):
        self.cfg, self.device, self.dist = cfg, torch.device(device), dist or DistInfo()
        opt, paths = cfg.train, cfg.path
        self.out_size = int(cfg.network_g["out_size"])
        self.log_size = int(math.log(self.out_size, 2))

        self.net_g = build_network(cfg.network_g).to(self.device)
        if load_pretrained:
            self._load_decoder(self.net_g)
            if paths.pretrain_network_g:
                self.net_g.load_state_dict(read_weights(paths.pretrain_network_g, paths.param_key_g),
                                           strict=bool(paths.strict_load_g))
        self.net_d = build_network(cfg.network_d).to(self.device)
        if load_pretrained and paths.pretrain_network_d:
            self.net_d.load_state_dict(read_weights(paths.pretrain_network_d), strict=paths.strict_load_d)
        # EMA generator: only for evaluation and checkpoints; starts equal to net_g (or the file's EMA)
        self.net_g_ema = copy.deepcopy(self.net_g).eval()
        if load_pretrained and paths.pretrain_network_g:
            self.net_g_ema.load_state_dict(read_weights(paths.pretrain_network_g, "params_ema"),
                                           strict=bool(paths.strict_load_g))
        self.net_g.train()
        self.net_d.train()

        self.net_d_comp: dict[str, nn.Module] = {}
        if cfg.use_facial_disc:
            for part in COMPONENTS:
                net = build_network(getattr(cfg, f"network_d_{part}")).to(self.device).train()
                path = getattr(paths, f"pretrain_network_d_{part}")
                if load_pretrained and path:
                    net.load_state_dict(read_weights(path, "params"), strict=True)
                self.net_d_comp[part] = net

        self.net_identity: nn.Module | None = None
        if cfg.use_identity:
            self.net_identity = build_network(cfg.network_identity).to(self.device)
            if load_pretrained and "identity" not in cfg.random_init:
                self.net_identity.load_state_dict(read_weights(paths.pretrain_network_identity, None), strict=True)
            self.net_identity.eval().requires_grad_(False)

        self.vgg: VGGFeatureExtractor | None = None
        if opt.perceptual_opt:
            p = opt.perceptual_opt
            if p.get("vgg_type", "vgg19") != "vgg19":
                raise TrainSetupError(f"perceptual_opt.vgg_type {p.get('vgg_type')!r}: only vgg19 is implemented")
            vgg = VGG19()
            if load_pretrained and "vgg19" not in cfg.random_init:
                vgg.load_torchvision(torch.load(resolve_vgg19(cfg), map_location="cpu", weights_only=True))
            self.vgg = VGGFeatureExtractor(list(p["layer_weights"]), p.get("use_input_norm", True),
                                           p.get("range_norm", False), vgg).to(self.device)

        for net in self.networks().values():
            broadcast_module(net, self.dist)
        self._setup_optimizers()
        self.log_dict: dict[str, float] = {}

    # ------------------------------------------------------------------ construction

    def _load_decoder(self, net_g: nn.Module) -> None:
        """Initialise the StyleGAN2 decoder from ``decoder_load_path`` (its ``params_ema``), as the
        official GFPGANv1 constructor does."""
        path = self.cfg.network_g.get("decoder_load_path")
        if path and "decoder" not in self.cfg.random_init:
            net_g.stylegan_decoder.load_state_dict(read_weights(resolve_file(path), "params_ema"), strict=True)

    def _adam(self, params: Any, lr: float, betas: tuple[float, float], opt: dict) -> torch.optim.Optimizer:
        kind = opt.get("type", "Adam")
        extra = {k: v for k, v in opt.items() if k not in ("type", "lr", "betas")}
        classes = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
        if kind not in classes:
            raise TrainSetupError(f"optimizer type {kind!r}: use Adam or AdamW")
        return classes[kind](params, lr, betas=betas, **extra)

    def _setup_optimizers(self) -> None:
        opt = self.cfg.train
        # generator: the official betas are (0**1, 0.99**1) -- beta1 = 0, written as an int
        self.optimizer_g = self._adam([{"params": list(self.net_g.parameters()), "lr": opt.optim_g["lr"]}],
                                      opt.optim_g["lr"], (0.0, 0.99), opt.optim_g)
        # discriminator: lazy R1 every k steps -> lr and betas scaled by k / (k + 1) (StyleGAN2)
        ratio = opt.net_d_reg_every / (opt.net_d_reg_every + 1)
        self.optimizer_d = self._adam([{"params": list(self.net_d.parameters()), "lr": opt.optim_d["lr"]}],
                                      opt.optim_d["lr"] * ratio, (0.0**ratio, 0.99**ratio), opt.optim_d)
        self.optimizer_comp = {
            part: self._adam(net.parameters(), opt.optim_component["lr"], (0.9, 0.99), opt.optim_component)
            for part, net in self.net_d_comp.items()}
        self.optimizers = [self.optimizer_g, self.optimizer_d, *self.optimizer_comp.values()]
        sched = opt.scheduler or {}
        if sched.get("type", "MultiStepLR") != "MultiStepLR":
            raise TrainSetupError(f"scheduler type {sched.get('type')!r}: only MultiStepLR is implemented")
        self.schedulers = [torch.optim.lr_scheduler.MultiStepLR(o, milestones=list(sched.get("milestones", [])),
                                                                gamma=sched.get("gamma", 0.1))
                           for o in self.optimizers]

    def networks(self) -> dict[str, nn.Module]:
        """Trained networks under their official checkpoint labels."""
        nets = {"net_g": self.net_g, "net_g_ema": self.net_g_ema, "net_d": self.net_d}
        nets.update({f"net_d_{p}": n for p, n in self.net_d_comp.items()})
        return nets

    # ------------------------------------------------------------------ learning rate

    def update_learning_rate(self, current_iter: int) -> None:
        """BasicSR: schedulers step once per iteration from iteration 2 on; linear warm-up before
        ``warmup_iter``."""
        if current_iter > 1:
            for s in self.schedulers:
                s.step()
        warmup = self.cfg.train.warmup_iter
        if current_iter < warmup:
            for o in self.optimizers:
                for g in o.param_groups:
                    g["lr"] = g["initial_lr"] * current_iter / warmup

    def current_lr(self) -> float:
        return self.optimizer_g.param_groups[0]["lr"]

    # ------------------------------------------------------------------ one iteration

    def feed(self, batch: dict[str, Any]) -> None:
        self.lq = batch["lq"].to(self.device)
        self.gt = batch["gt"].to(self.device).contiguous()
        self.locs = {p: batch[f"loc_{p}"] for p in COMPONENTS} if "loc_left_eye" in batch else None

    def crop_components(self, img: Tensor) -> dict[str, Tensor]:
        """Eye and mouth crops (80 and 120 px at 512, scaled with the face) by RoIAlign.

        The official code computes ``face_ratio = int(out_size / 512)``, which is 0 below 512 px; at
        512 and above this is the same arithmetic (crops times face_ratio, sizes times it), below
        it crops of 80 * size // 512 and 120 * size // 512 px with ratio 1."""
        ratio = int(self.out_size / 512)
        if ratio >= 1:
            eye, mouth = 80 * ratio, 120 * ratio
        else:
            ratio, eye, mouth = 1, 80 * self.out_size // 512, 120 * self.out_size // 512
        locs = self.locs
        n = locs["left_eye"].size(0)
        idx = torch.arange(n, dtype=locs["left_eye"].dtype).view(n, 1)
        # rows alternate left/right eye of each sample, as the official roi list
        rois_eyes = torch.cat([idx.repeat_interleave(2, 0),
                               torch.stack([locs["left_eye"], locs["right_eye"]], 1).reshape(2 * n, 4)], 1)
        rois_mouths = torch.cat([idx, locs["mouth"]], 1)
        eyes = roi_align(img, rois_eyes.to(self.device), eye) * ratio
        return {"left_eye": eyes[0::2], "right_eye": eyes[1::2],
                "mouth": roi_align(img, rois_mouths.to(self.device), mouth) * ratio}

    def pyramid_weight(self, current_iter: int) -> float:
        w = self.cfg.train.pyramid_loss_weight or 0
        if w > 0 and current_iter > self.cfg.train.remove_pyramid_loss:
            w = 1e-12  # official: tiny instead of 0 so that DDP still sees the toRGB parameters used
        return w

    def generator_losses(self, current_iter: int, out_rgbs: list[Tensor], crops: dict[str, Tensor] | None,
                         crops_gt: dict[str, Tensor] | None) -> OrderedDict[str, Tensor]:
        """Every generator loss term, in the official order and under the official log names."""
        opt, out, gt = self.cfg.train, self.output, self.gt
        terms: OrderedDict[str, Tensor] = OrderedDict()
        if opt.pixel_opt:
            terms["l_g_pix"] = L.l1(out, gt, opt.pixel_opt.get("loss_weight", 1.0))
        w = self.pyramid_weight(current_iter)
        if w > 0:
            terms.update(L.pyramid_losses(out_rgbs, gt, w))
        if self.vgg is not None:
            p = opt.perceptual_opt
            feats, feats_gt = self.vgg(out), self.vgg(gt.detach())
            crit = p.get("criterion", "l1")
            if p.get("perceptual_weight", 1.0) > 0:
                terms["l_g_percep"] = L.perceptual_loss(feats, feats_gt, p["layer_weights"], p["perceptual_weight"],
                                                        crit)
            if p.get("style_weight", 0) > 0:
                terms["l_g_style"] = L.style_loss(feats, feats_gt, p["layer_weights"], p["style_weight"], crit)
        terms["l_g_gan"] = self._gan(self.net_d(out), True)
        if crops is not None:
            comp = opt.gan_component_opt
            fake_feats, real_feats = {}, {}
            for part in COMPONENTS:
                pred, fake_feats[part] = self.net_d_comp[part](crops[part], return_feats=True)
                terms[f"l_g_gan_{part}"] = self._gan(pred, True, comp)
            if opt.comp_style_weight > 0:
                for part in COMPONENTS:
                    _, real_feats[part] = self.net_d_comp[part](crops_gt[part], return_feats=True)
                style: Tensor | int = 0
                for part in COMPONENTS:
                    style = style + L.component_style_loss(fake_feats[part], real_feats[part])
                terms["l_g_comp_style_loss"] = style * opt.comp_style_weight
        if self.net_identity is not None:
            terms["l_identity"] = L.identity_loss(self.net_identity, out, gt, opt.identity_weight)
        return terms

    def _gan(self, pred: Tensor, real: bool, opt: dict | None = None, is_disc: bool = False) -> Tensor:
        opt = opt or self.cfg.train.gan_opt
        return L.gan_loss(pred, real, opt.get("gan_type", "wgan_softplus"), opt.get("loss_weight", 1.0), is_disc,
                          opt.get("real_label_val", 1.0), opt.get("fake_label_val", 0.0))

    def generator_step(self, current_iter: int) -> OrderedDict[str, Tensor]:
        """Restore the batch, crop the components, and (on generator iterations) update net_g."""
        set_requires_grad([self.net_d, *self.net_d_comp.values()], False)
        self.optimizer_g.zero_grad()
        self.output, out_rgbs = self.net_g(self.lq, return_rgb=self.pyramid_weight(current_iter) > 0)
        crops = crops_gt = None
        if self.net_d_comp and self.locs is not None:
            crops_gt, crops = self.crop_components(self.gt), self.crop_components(self.output)
        self.crops, self.crops_gt = crops, crops_gt
        opt = self.cfg.train
        terms: OrderedDict[str, Tensor] = OrderedDict()
        if current_iter % opt.net_d_iters == 0 and current_iter > opt.net_d_init_iters:
            terms = self.generator_losses(current_iter, out_rgbs, crops, crops_gt)
            total: Tensor | int = 0
            for v in terms.values():
                total = total + v
            total.backward()
            average_gradients(self.net_g, self.dist)
            self.optimizer_g.step()
        return terms

    def ema_step(self) -> None:
        L.ema_update(self.net_g_ema, self.net_g, self.cfg.train.ema_decay)

    def discriminator_step(self, current_iter: int) -> OrderedDict[str, Tensor]:
        """Logistic loss on real and restored faces, plus lazy R1 on real faces; one step."""
        set_requires_grad([self.net_d, *self.net_d_comp.values()], True)
        self.optimizer_d.zero_grad()
        for o in self.optimizer_comp.values():
            o.zero_grad()
        terms: OrderedDict[str, Tensor] = OrderedDict()
        fake_pred = self.net_d(self.output.detach())
        real_pred = self.net_d(self.gt)
        l_d = self._gan(real_pred, True, is_disc=True) + self._gan(fake_pred, False, is_disc=True)
        terms["l_d"] = l_d
        terms["real_score"] = real_pred.detach().mean()  # WGAN: real positive, fake negative
        terms["fake_score"] = fake_pred.detach().mean()
        l_d.backward()
        k = self.cfg.train.net_d_reg_every
        if current_iter % k == 0:
            terms["l_d_r1"] = self.r1_step(k)
        average_gradients(self.net_d, self.dist)
        self.optimizer_d.step()
        return terms

    def r1_step(self, reg_every: int) -> Tensor:
        """R1 on real faces, scaled by the lazy interval (StyleGAN2: weight / 2 * k); backward."""
        gt = self.gt.detach().requires_grad_(True)
        real_pred = self.net_d(gt)
        l_r1 = self.cfg.train.r1_reg_weight / 2 * L.r1_penalty(real_pred, gt) * reg_every + 0 * real_pred[0]
        l_r1.backward()
        return l_r1.detach().mean()

    def component_discriminator_step(self) -> OrderedDict[str, Tensor]:
        """Each component discriminator: the component GAN loss on the real crop, the main GAN loss
        on the restored crop (the official mix), one step each."""
        terms: OrderedDict[str, Tensor] = OrderedDict()
        if not self.net_d_comp or self.crops is None:
            return terms
        comp = self.cfg.train.gan_component_opt
        for part in COMPONENTS:
            net = self.net_d_comp[part]
            fake_pred, _ = net(self.crops[part].detach())
            real_pred, _ = net(self.crops_gt[part])
            loss = self._gan(real_pred, True, comp, is_disc=True) + self._gan(fake_pred, False, is_disc=True)
            terms[f"l_d_{part}"] = loss
            loss.backward()
        for part in COMPONENTS:
            average_gradients(self.net_d_comp[part], self.dist)
            self.optimizer_comp[part].step()
        return terms

    def train_step(self, batch: dict[str, Any], current_iter: int) -> dict[str, float]:
        """One full iteration (``optimize_parameters``); returns the logged loss values."""
        self.feed(batch)
        terms = self.generator_step(current_iter)
        self.ema_step()
        terms.update(self.discriminator_step(current_iter))
        terms.update(self.component_discriminator_step())
        self.log_dict = self.reduce_losses(terms)
        return self.log_dict

    def reduce_losses(self, terms: dict[str, Tensor]) -> dict[str, float]:
        with torch.no_grad():
            if not terms:
                return {}
            values = torch.stack([v.detach().reshape(-1).mean() for v in terms.values()])
            if self.dist.enabled:
                torch.distributed.all_reduce(values)
                values /= self.dist.world_size
            return OrderedDict((k, float(v)) for k, v in zip(terms, values.tolist()))

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def validate(self, loader: Iterable[dict[str, Any]]) -> dict[str, float]:
        """Mean PSNR and SSIM (BasicSR definitions, RGB, crop 0) of the EMA generator on a paired
        folder (fresh noise from a private RNG, so validating does not change the training's
        random stream)."""
        from ..metrics.psnr_ssim import ssim

        values: dict[str, list[float]] = {"psnr": [], "ssim": []}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(0)
            for batch in loader:
                out, _ = self.net_g_ema(batch["lq"].to(self.device))
                for o, g in zip(out, batch["gt"]):
                    restored, reference = tensor_to_uint8(o), tensor_to_uint8(g)
                    values["psnr"].append(psnr(restored, reference))
                    values["ssim"].append(ssim(restored, reference))
        return {k: float(np.mean(v)) if v else float("nan") for k, v in values.items()}

    # ------------------------------------------------------------------ checkpoints

    def save(self, root: Path, current_iter: int | str, epoch: int) -> None:
        """Official layout: models/net_g_<iter>.pth ({'params', 'params_ema'}), net_d_*.pth
        ({'params'}), training_states/<iter>.state (optimizers, schedulers, iteration, RNG)."""
        models, states = root / "models", root / "training_states"
        models.mkdir(parents=True, exist_ok=True)
        states.mkdir(parents=True, exist_ok=True)
        sd = lambda net: OrderedDict((k, v.detach().cpu()) for k, v in net.state_dict().items())  # noqa: E731
        _atomic_save({"params": sd(self.net_g), "params_ema": sd(self.net_g_ema)}, models / f"net_g_{current_iter}.pth")
        _atomic_save({"params": sd(self.net_d)}, models / f"net_d_{current_iter}.pth")
        for part, net in self.net_d_comp.items():
            _atomic_save({"params": sd(net)}, models / f"net_d_{part}_{current_iter}.pth")
        if current_iter == "latest":
            return
        state = {"epoch": epoch, "iter": current_iter,
                 "optimizers": [o.state_dict() for o in self.optimizers],
                 "schedulers": [_scheduler_state(s) for s in self.schedulers],
                 "rng": rng_state()}
        _atomic_save(state, states / f"{current_iter}.state")

    def resume(self, state_path: Path) -> dict[str, Any]:
        """Load a training state and the networks saved with it (same folder layout)."""
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        it = state["iter"]
        models = state_path.parent.parent / "models"
        g = torch.load(models / f"net_g_{it}.pth", map_location="cpu", weights_only=True)
        self.net_g.load_state_dict(g["params"])
        self.net_g_ema.load_state_dict(g["params_ema"])
        self.net_d.load_state_dict(torch.load(models / f"net_d_{it}.pth", map_location="cpu",
                                              weights_only=True)["params"])
        for part, net in self.net_d_comp.items():
            net.load_state_dict(torch.load(models / f"net_d_{part}_{it}.pth", map_location="cpu",
                                           weights_only=True)["params"])
        if len(state["optimizers"]) != len(self.optimizers):
            raise TrainSetupError(f"{state_path}: saved with {len(state['optimizers'])} optimizers, "
                                  f"these options make {len(self.optimizers)}")
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        for sch, s in zip(self.schedulers, state["schedulers"]):
            s = dict(s)
            s["milestones"] = Counter({int(k): v for k, v in s["milestones"].items()})
            sch.load_state_dict(s)
        if "rng" in state:
            set_rng_state(state["rng"], self.dist)
        return state


def _scheduler_state(s: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    state = dict(s.state_dict())
    state["milestones"] = {int(k): int(v) for k, v in state.get("milestones", {}).items()}  # Counter -> dict
    return state


def rng_state() -> dict[str, Any]:
    """Every RNG the training draws from, in weights_only-loadable types."""
    np_state = np.random.get_state()
    out = {"torch": torch.get_rng_state(), "python": _py_state(random.getstate()),
           "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                     "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def _py_state(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def set_rng_state(state: dict[str, Any], dist: DistInfo | None = None) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- files


def resolve_file(path: str | None) -> Path:
    """A pretrained file from the options: the path as written, else the same release file in the
    zoo cache or the official folders."""
    from ..models import zoo
    p = Path(path)
    if p.is_file():
        return p
    entry = zoo.find_entry(p.name)
    found = zoo.locate(entry) if entry else None
    if found is None:
        raise TrainSetupError(f"{path} is missing")
    return found


def resolve_vgg19(cfg: TrainConfig) -> Path:
    from ..models import zoo
    if cfg.path.pretrain_vgg19:
        return resolve_file(cfg.path.pretrain_vgg19)
    found = zoo.locate(zoo.find_entry("vgg19"))
    if found is None:
        raise TrainSetupError("vgg19-dcbb9e9d.pth is missing")
    return found


def missing_files(cfg: TrainConfig) -> list[str]:
    """Every file the options need that is not on disk, each with where to put it and where to get it."""
    from ..models import zoo
    problems: list[str] = []

    def need(what: str, path: str | None, zoo_name: str | None, random_key: str | None = None) -> None:
        if random_key and random_key in cfg.random_init:
            return
        entry = zoo.find_entry(zoo_name) if zoo_name else None
        if path and Path(path).is_file():
            return
        if entry is not None and zoo.locate(entry) is not None and (path is None or Path(path).name ==
                                                                     entry.filename):
            return
        where = f"put it at {path}" if path else f"put it at {zoo.cached_path(entry)}"
        if entry is not None:
            if path:
                where += f" (or {zoo.cached_path(entry)})"
            where += f"; download {entry.url} or run: facerestore models --download {entry.name}"
        hint = f"; or add '{random_key}' to random_init to train from random weights (toy runs only)" \
            if random_key else ""
        problems.append(f"{what}: {path or entry.filename} not found; {where}{hint}")

    data = cfg.train_data
    root = Path(data.dataroot_gt)
    if not root.exists():
        # relative paths are read from the working folder (as BasicSR does), not the option file's
        shown = str(root) if root.is_absolute() else f"{root} (relative to the current folder {Path.cwd()})"
        problems.append(f"training faces (datasets.train.dataroot_gt): folder {shown} not found; put aligned "
                        f"face images (e.g. FFHQ; resized to {data.out_size}x{data.out_size}) there, or an LMDB "
                        f"with io_backend type lmdb")
    elif data.io_backend.get("type", "disk") == "disk" and not any(
            p.suffix.lower() in (".png", ".jpg", ".jpeg") for p in root.iterdir()):
        problems.append(f"training faces (datasets.train.dataroot_gt): no images in {root}")
    decoder = cfg.network_g.get("decoder_load_path")
    if decoder:
        need("StyleGAN2 decoder (network_g.decoder_load_path)", decoder, "stylegan2-512", "decoder")
    if cfg.use_identity:
        need("ArcFace identity network (path.pretrain_network_identity)", cfg.path.pretrain_network_identity,
             "arcface-resnet18", "identity")
    if data.crop_components and data.component_path not in (None, "template"):
        need("eye/mouth landmarks (datasets.train.component_path)", data.component_path, "ffhq-components")
    elif data.crop_components and data.component_path is None:
        problems.append("datasets.train.component_path is empty: give FFHQ_eye_mouth_landmarks_512.pth, "
                        "a file made by `facerestore components DATAROOT -o FILE`, or 'template'")
    if cfg.train.perceptual_opt:
        need("VGG19 for the perceptual loss (path.pretrain_vgg19)", cfg.path.pretrain_vgg19, "vgg19", "vgg19")
    for key in ("pretrain_network_g", "pretrain_network_d", "pretrain_network_d_left_eye",
                "pretrain_network_d_right_eye", "pretrain_network_d_mouth"):
        p = getattr(cfg.path, key)
        if p and not Path(p).is_file():
            problems.append(f"path.{key}: {p} not found (set it to ~ to start from scratch)")
    if cfg.val_data is not None:
        for key in ("dataroot_lq", "dataroot_gt"):
            p = getattr(cfg.val_data, key)
            if not Path(p).is_dir():
                problems.append(f"validation (datasets.val.{key}): folder {p} not found; remove the 'val' "
                                f"block of datasets to train without validation")
    return problems


def find_latest_state(root: Path) -> Path | None:
    """The training state with the highest iteration under <root>/training_states (auto-resume)."""
    folder = root / "training_states"
    if not folder.is_dir():
        return None
    states = [(int(m.group(1)), p) for p in folder.iterdir() if (m := re.fullmatch(r"(\d+)\.state", p.name))]
    return max(states)[1] if states else None


# ----------------------------------------------------------------------------- the loop


def setup_distributed(launcher: str) -> DistInfo:
    """torchrun's environment -> an initialised process group (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if launcher == "none" or (launcher == "auto" and world <= 1):
        return DistInfo()
    if "RANK" not in os.environ:
        raise TrainSetupError("--launcher pytorch needs torchrun's environment (RANK, WORLD_SIZE, ...): "
                              "run torchrun --nproc_per_node N -m facerestore train -c CFG")
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(info.local_rank)
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    return info


def pick_device(cfg: TrainConfig, dist: DistInfo) -> torch.device:
    if cfg.device:
        dev = torch.device(cfg.device)
        if dev.type == "cuda" and dist.enabled:
            return torch.device("cuda", dist.local_rank)
        return dev
    if cfg.num_gpu not in (0, "0") and torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def make_train_loader(cfg: TrainConfig, dist: DistInfo, seed: int):
    from torch.utils.data import DataLoader

    from .dataset import EpochSampler, FFHQDegradationDataset, worker_init_fn
    data = cfg.train_data
    dataset = FFHQDegradationDataset(data)
    sampler = EpochSampler(len(dataset), dist.world_size, dist.rank, data.dataset_enlarge_ratio, data.use_shuffle,
                           seed)
    workers = int(data.num_worker_per_gpu or 0)
    loader = DataLoader(dataset, batch_size=data.batch_size_per_gpu, sampler=sampler, num_workers=workers,
                        drop_last=True, generator=torch.Generator().manual_seed(seed + dist.rank),
                        worker_init_fn=partial(worker_init_fn, num_workers=workers, rank=dist.rank, seed=seed)
                        if workers else None, persistent_workers=False)
    if len(sampler) < data.batch_size_per_gpu:
        raise TrainSetupError(f"{data.dataroot_gt}: {len(dataset)} images give {len(sampler)} per process, fewer "
                              f"than batch_size_per_gpu={data.batch_size_per_gpu}")
    return loader, sampler


def make_val_loader(cfg: TrainConfig):
    from torch.utils.data import DataLoader

    from .dataset import PairedImageDataset
    v = cfg.val_data
    return DataLoader(PairedImageDataset(v.dataroot_lq, v.dataroot_gt, v.mean, v.std, cfg.train_data.out_size),
                      batch_size=1)


class _Logger:
    """stdout (rank 0) and TensorBoard when installed and ``logger.use_tb_logger``."""

    def __init__(self, cfg: TrainConfig, root: Path, enabled: bool, print_fn=print):
        self.enabled, self.print, self.tb = enabled, print_fn, None
        if enabled and cfg.logger.use_tb_logger:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(root / "tb_logger"))
            except ImportError:
                pass  # TensorBoard is optional

    def scalars(self, it: int, values: dict[str, float]) -> None:
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(f"losses/{k}" if k.startswith("l_") else k, v, it)

    def info(self, msg: str) -> None:
        if self.enabled:
            self.print(msg, flush=True)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def run_training(cfg: TrainConfig, auto_resume: bool = False, launcher: str = "auto", print_fn=print,
                 max_iters: int | None = None) -> dict[str, Any]:
    """Train with the options ``cfg`` until ``train.total_iter`` (or ``max_iters`` more iterations).
    Returns a summary (last losses, iteration, checkpoint folder)."""
    problems = missing_files(cfg)
    if problems:
        raise TrainSetupError("cannot start training; missing:\n  - " + "\n  - ".join(problems))
    dist = setup_distributed(launcher)
    device = pick_device(cfg, dist)
    seed = cfg.manual_seed if cfg.manual_seed is not None else 0
    root = cfg.experiments_root
    state_path = Path(cfg.path.resume_state) if cfg.path.resume_state else None
    if state_path is None and auto_resume:
        state_path = find_latest_state(root)
    # BasicSR seeds every process with seed + rank before building the networks
    random.seed(seed + dist.rank)
    np.random.seed(seed + dist.rank)
    torch.manual_seed(seed + dist.rank)
    trainer = GFPGANTrainer(cfg, device, dist)
    logger = _Logger(cfg, root, dist.is_main, print_fn)
    start_iter = 0
    if state_path is not None:
        start_iter = int(trainer.resume(state_path)["iter"])
        logger.info(f"resumed from {state_path} at iteration {start_iter}")
    loader, sampler = make_train_loader(cfg, dist, seed)
    val_loader = make_val_loader(cfg) if cfg.val_data is not None and cfg.val is not None else None
    iters_per_epoch = len(sampler) // cfg.train_data.batch_size_per_gpu
    total = int(cfg.train.total_iter)
    if max_iters is not None:
        total = min(total, start_iter + max_iters)
    logger.info(f"training {cfg.name}: {len(loader.dataset)} faces, {dist.world_size} process(es) on {device}, "
                f"batch {cfg.train_data.batch_size_per_gpu}/process, iterations {start_iter + 1}..{total}")
    it, epoch, last, t0 = start_iter, start_iter // iters_per_epoch, {}, time.time()
    save_every = int(cfg.logger.save_checkpoint_freq)
    try:
        while it < total:
            epoch = it // iters_per_epoch
            sampler.set_epoch(epoch, start=(it % iters_per_epoch) * cfg.train_data.batch_size_per_gpu)
            for batch in loader:
                it += 1
                trainer.update_learning_rate(it)
                last = trainer.train_step(batch, it)
                if not all(math.isfinite(v) for v in last.values()):
                    raise TrainSetupError(f"iteration {it}: a loss is not finite: {last}")
                if it % int(cfg.logger.print_freq) == 0 or it == total:
                    rate = (it - start_iter) / max(time.time() - t0, 1e-9)
                    logger.info(f"[epoch {epoch} iter {it}] lr {trainer.current_lr():.3e} {rate:.2f} it/s  "
                                + " ".join(f"{k} {v:.4e}" for k, v in last.items()))
                    logger.scalars(it, last)
                if it % save_every == 0 and dist.is_main:
                    trainer.save(root, it, epoch)
                if val_loader is not None and it % int(cfg.val.val_freq) == 0 and dist.is_main:
                    scores = trainer.validate(val_loader)
                    logger.info(f"validation at iter {it}: psnr {scores['psnr']:.4f} dB, ssim {scores['ssim']:.4f}")
                    logger.scalars(it, {f"metrics/{k}": v for k, v in scores.items()})
                if it >= total:
                    break
        if dist.enabled:
            logger.info(f"processes in sync: max weight difference {weights_spread(trainer.net_g, dist):.3g}")
        if dist.is_main:
            trainer.save(root, "latest", epoch)
            if it % save_every:
                trainer.save(root, it, epoch)
    finally:
        logger.close()
        if dist.enabled:
            torch.distributed.barrier()
    return {"iter": it, "losses": last, "root": root, "trainer": trainer}
