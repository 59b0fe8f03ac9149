"""One GFPGAN training iteration (the official ``GFPGANModel.optimize_parameters``): the networks,
their optimizers and learning rates, and the losses in their official order.

One iteration, as in the paper (Sec. 3.4) and the official code, in this order:

1. generator: restore the degraded batch, then L1 (pixel), the intermediate-restoration pyramid
   L1, perceptual + style (VGG19), adversarial (StyleGAN2 discriminator, ``wgan_softplus``),
   facial-component adversarial + Gram style, identity (ArcFace); one Adam step;
2. EMA of the generator;
3. StyleGAN2 discriminator: logistic loss on real/restored, plus lazy R1 every
   ``net_d_reg_every`` iterations; one Adam step;
4. the three component discriminators (BCE on real crops, ``wgan_softplus`` on restored ones).

``tests/test_train_official_step.py`` checks every loss term and the updated weights of one
iteration against the official code's.
"""
from __future__ import annotations

import copy
import math
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..archs.vgg import VGG19, VGGFeatureExtractor
from . import losses
from .config import GANLossOptions, OptimizerOptions, TrainConfig, TrainSetupError
from .distributed import DistInfo, average_gradients, broadcast_module
from .networks import build_network, read_weights, resolve_file, resolve_vgg19
from .roi_align import roi_align

COMPONENTS = ("left_eye", "right_eye", "mouth")


def set_requires_grad(nets: Iterable[nn.Module | None], flag: bool) -> None:
    for net in nets:
        if net is not None:
            for p in net.parameters():
                p.requires_grad = flag


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
        if cfg.network_identity is not None:
            identity = build_network(cfg.network_identity).to(self.device)
            if load_pretrained and "identity" not in cfg.random_init:
                if not paths.pretrain_network_identity:
                    raise TrainSetupError("path.pretrain_network_identity is empty: give arcface_resnet18.pth, or "
                                          "add 'identity' to random_init (toy runs only)")
                identity.load_state_dict(read_weights(paths.pretrain_network_identity, None), strict=True)
            self.net_identity = identity.eval().requires_grad_(False)

        self.vgg: VGGFeatureExtractor | None = None
        if opt.perceptual_opt:
            p = opt.perceptual_opt
            vgg = VGG19()
            if load_pretrained and "vgg19" not in cfg.random_init:
                vgg.load_torchvision(torch.load(resolve_vgg19(cfg), map_location="cpu", weights_only=True))
            self.vgg = VGGFeatureExtractor(list(p.layer_weights), p.use_input_norm, p.range_norm, vgg).to(self.device)

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
            decoder = net_g.get_submodule("stylegan_decoder")
            decoder.load_state_dict(read_weights(resolve_file(path), "params_ema"), strict=True)

    @staticmethod
    def _adam(params: Any, lr: float, betas: tuple[float, float], opt: OptimizerOptions) -> torch.optim.Optimizer:
        classes = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
        if opt.type not in classes:
            raise TrainSetupError(f"optimizer type {opt.type!r}: use Adam or AdamW")
        return classes[opt.type](params, lr, betas=betas, **opt.extra())

    def _setup_optimizers(self) -> None:
        opt = self.cfg.train
        # generator: the official betas are (0**1, 0.99**1) -- beta1 = 0, written as an int
        self.optimizer_g = self._adam([{"params": list(self.net_g.parameters()), "lr": opt.optim_g.lr}],
                                      opt.optim_g.lr, (0.0, 0.99), opt.optim_g)
        # discriminator: lazy R1 every k steps -> lr and betas scaled by k / (k + 1) (StyleGAN2)
        ratio = opt.net_d_reg_every / (opt.net_d_reg_every + 1)
        self.optimizer_d = self._adam([{"params": list(self.net_d.parameters()), "lr": opt.optim_d.lr}],
                                      opt.optim_d.lr * ratio, (0.0**ratio, 0.99**ratio), opt.optim_d)
        self.optimizer_comp = {
            part: self._adam(net.parameters(), opt.optim_component.lr, (0.9, 0.99), opt.optim_component)
            for part, net in self.net_d_comp.items()}
        self.optimizers = [self.optimizer_g, self.optimizer_d, *self.optimizer_comp.values()]
        sched = opt.scheduler
        if sched.type != "MultiStepLR":
            raise TrainSetupError(f"scheduler type {sched.type!r}: only MultiStepLR is implemented")
        self.schedulers = [torch.optim.lr_scheduler.MultiStepLR(o, milestones=list(sched.milestones), gamma=sched.gamma)
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
            with warnings.catch_warnings():
                # right after a resume no optimizer has stepped in this process yet; the order is BasicSR's
                warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before", UserWarning)
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
        if locs is None:
            raise ValueError("the batch has no eye/mouth boxes (loc_left_eye, ...): set crop_components")
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
            terms["l_g_pix"] = losses.l1(out, gt, opt.pixel_opt.loss_weight)
        w = self.pyramid_weight(current_iter)
        if w > 0:
            terms.update(losses.pyramid_losses(out_rgbs, gt, w))
        p = opt.perceptual_opt
        if self.vgg is not None and p is not None:
            feats, feats_gt = self.vgg(out), self.vgg(gt.detach())
            if p.perceptual_weight > 0:
                terms["l_g_percep"] = losses.perceptual_loss(feats, feats_gt, p.layer_weights, p.perceptual_weight,
                                                        p.criterion)
            if p.style_weight > 0:
                terms["l_g_style"] = losses.style_loss(feats, feats_gt, p.layer_weights, p.style_weight, p.criterion)
        terms["l_g_gan"] = self._gan(self.net_d(out), True)
        if crops is not None and crops_gt is not None:
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
                    style = style + losses.component_style_loss(fake_feats[part], real_feats[part])
                assert isinstance(style, Tensor)
                terms["l_g_comp_style_loss"] = style * opt.comp_style_weight
        if self.net_identity is not None:
            terms["l_identity"] = losses.identity_loss(self.net_identity, out, gt, opt.identity_weight)
        return terms

    def _gan(self, pred: Tensor, real: bool, opt: GANLossOptions | None = None, is_disc: bool = False) -> Tensor:
        opt = opt or self.cfg.train.gan_opt
        return losses.gan_loss(pred, real, opt.gan_type, opt.loss_weight, is_disc, opt.real_label_val,
                               opt.fake_label_val)

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
            assert isinstance(total, Tensor), "no generator loss is switched on"
            total.backward()
            average_gradients(self.net_g, self.dist)
            self.optimizer_g.step()
        return terms

    def ema_step(self) -> None:
        losses.ema_update(self.net_g_ema, self.net_g, self.cfg.train.ema_decay)

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
        l_r1 = self.cfg.train.r1_reg_weight / 2 * losses.r1_penalty(real_pred, gt) * reg_every + 0 * real_pred[0]
        l_r1.backward()
        return l_r1.detach().mean()

    def component_discriminator_step(self) -> OrderedDict[str, Tensor]:
        """Each component discriminator: the component GAN loss on the real crop, the main GAN loss
        on the restored crop (the official mix), one step each."""
        terms: OrderedDict[str, Tensor] = OrderedDict()
        if not self.net_d_comp or self.crops is None or self.crops_gt is None:
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
            return OrderedDict((k, float(v)) for k, v in zip(terms, values.tolist(), strict=True))
