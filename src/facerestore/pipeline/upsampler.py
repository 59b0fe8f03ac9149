"""Background upsampling with a super-resolution network (Real-ESRGAN's ``RealESRGANer``), tiled.

``Upsampler(model).enhance(img)`` takes an OpenCV image (BGR or BGRA or grey; 8 or 16 bit) and
returns the network's upscaled image of the same kind. Pre- and post-processing are the
official ones (value range, channel order, reflect pre-pad, mod-pad, clamp, rounding, Lanczos
resize to ``outscale``), so an untiled run gives Real-ESRGAN's pixels.

Tiling differs on purpose. The official tiler crops each tile's output to its core and keeps only
``tile_pad`` input pixels of context around it; pixels near a core's edge then see the tile's zero
padding instead of the real neighbours, and the seams differ from the untiled image by up to 3
grey levels (RRDBNet, tile_pad=10). Ours is built so a tiled run equals the untiled one:

* Every tile is a core of ``tile`` pixels plus ``tile_pad`` pixels of real context on each side,
  clipped at the image border (there the tile's border *is* the image's, so the convolutions pad
  exactly as in the untiled run). Only the core's output is kept: a hard crop, no blending.
  Feathering would not help: at a seam both tiles sit ``tile_pad`` pixels from their own edges,
  so a blend can only average two errors of that size; the error at a seam is set by the context.
* Core edges and context are rounded up to the network's input granularity (``mod``: RRDBNet x2
  and x1 start with a pixel-unshuffle by 2 / 4, and a tile cut off that grid changes every
  output pixel).
* The context default, ``DEFAULT_TILE_PAD = 24``, comes from a measurement: RRDBNet x2plus
  (23 blocks; RealESRGAN_x2plus shapes, random weights) run on a crop, against the full image,
  differs at ``d`` input pixels from the crop's edge by 1.7 grey levels at d=10, 0.6 at d=12, 0.02
  at d=16, and by float noise only (1e-5 of full range, the untiled run's own noise across conv
  algorithms) from d=20 on; x4plus (no unshuffle) needs half of that. 24 leaves a margin for
  trained weights, whose effective receptive field may be somewhat wider. The cost is the
  overlap: (400 + 48)^2 / 400^2 = 1.25x the work at ``tile=400`` (1.1x with the official 10).

Memory: the input and output images live on ``device``; the network sees one tile at a time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_TILE_PAD = 24

AlphaUpsampler = Literal["model", "resize"]


class Upsampler:
    """Upscale images with ``model``, optionally tile by tile.

    Args:
        model: a zoo name (``realesrgan-x2plus``), a weights file, or a module mapping
            ``(1, 3, H, W)`` RGB in [0, 1] to ``(1, 3, s*H, s*W)``; put in eval mode. Its factor
            ``s`` is its descriptor's (:func:`facerestore.models.describe`): RRDBNet's from its
            weights; a network of one's own declares it with a ``descriptor`` attribute
            (``ModelDescriptor(name, Purpose.UPSCALING, scale=s)``).
        tile: core tile size in input pixels; 0 runs the whole image at once.
        tile_pad: real context around each tile, in input pixels (see the module docstring).
        pre_pad: reflect padding added right and bottom before the network and cut after it
            (the official border trick; GFPGAN's background upsampler uses 0).
        device: where the network and the image tensors live.
        alpha_upsampler: for BGRA input, ``"model"`` upscales the alpha channel with the network
            too (the official default, ``alpha_upsampler='realesrgan'``); ``"resize"`` uses a
            bilinear ``cv2.resize`` (faster, and what the official does otherwise).
    """

    def __init__(
        self,
        model: nn.Module | str | Path,
        tile: int = 0,
        tile_pad: int = DEFAULT_TILE_PAD,
        pre_pad: int = 0,
        device: torch.device | str = "cpu",
        alpha_upsampler: AlphaUpsampler = "model",
    ) -> None:
        from ..models.descriptor import Purpose, describe, require_purpose

        if not isinstance(model, nn.Module):
            from ..models.loading import load

            model = load(model, device, purpose=Purpose.UPSCALING, role="the upsampler").model
        # The factor is the descriptor's, the one place that says what the network does (a
        # network of one's own declares it with a ``descriptor`` attribute); nothing to disagree with.
        descriptor = describe(model)
        require_purpose(descriptor, Purpose.UPSCALING, "the upsampler")
        scale = descriptor.scale
        if alpha_upsampler not in ("model", "resize"):
            raise ValueError(f"alpha_upsampler must be 'model' or 'resize', not {alpha_upsampler!r}")
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.scale = int(scale)
        self.tile = tile
        self.tile_pad = tile_pad
        self.pre_pad = pre_pad
        self.alpha_upsampler = alpha_upsampler
        # RRDBNet pixel-unshuffles x2 / x1 models by 2 / 4: their input sizes (and tile grid) must be
        # multiples of that. The official keys this on the scale alone; so do we.
        self.mod = {2: 2, 1: 4}.get(self.scale, 1)

    # ------------------------------------------------------------------ tensors

    @torch.no_grad()
    def upscale_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, C, H, W)`` float in [0, 1] -> ``(1, C, s*H, s*W)``, not clamped."""
        _, _, h, w = x.shape
        if self.pre_pad:
            x = F.pad(x, (0, self.pre_pad, 0, self.pre_pad), mode="reflect")
        mod_h, mod_w = -x.shape[2] % self.mod, -x.shape[3] % self.mod
        if mod_h or mod_w:
            x = F.pad(x, (0, mod_w, 0, mod_h), mode="reflect")
        out = self._tiled(x) if self.tile > 0 else self.model(x)
        return out[:, :, : h * self.scale, : w * self.scale]

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        """The network on ``x`` one tile at a time; equal to ``self.model(x)`` (module docstring)."""
        b, c, h, w = x.shape
        s = self.scale
        tile = _round_up(self.tile, self.mod)
        pad = _round_up(self.tile_pad, self.mod)
        out = x.new_zeros((b, c, h * s, w * s))
        for y0 in range(0, h, tile):
            y1 = min(y0 + tile, h)
            ty0, ty1 = max(y0 - pad, 0), min(y1 + pad, h)
            for x0 in range(0, w, tile):
                x1 = min(x0 + tile, w)
                tx0, tx1 = max(x0 - pad, 0), min(x1 + pad, w)
                tile_out = self.model(x[:, :, ty0:ty1, tx0:tx1])  # (b, c, s*(ty1-ty0), s*(tx1-tx0))
                out[:, :, y0 * s : y1 * s, x0 * s : x1 * s] = tile_out[
                    :, :, (y0 - ty0) * s : (y1 - ty0) * s, (x0 - tx0) * s : (x1 - tx0) * s
                ]
        return out

    def _upscale_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` float32 RGB in [0, 1] -> ``(s*H, s*W, 3)`` float32 BGR in [0, 1]."""
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).unsqueeze(0).to(self.device)
        y = self.upscale_tensor(x)[0].float().clamp_(0, 1).cpu().numpy()  # (3, s*H, s*W) RGB
        return np.ascontiguousarray(y[::-1].transpose(1, 2, 0))

    # ------------------------------------------------------------------ images

    def enhance(self, img: np.ndarray, outscale: float | None = None) -> np.ndarray:
        """Upscale an OpenCV image; the result has the input's kind.

        ``img`` is ``(H, W)`` grey, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA, 8 or 16 bit. 16-bit is
        recognised by dtype ``uint16`` or, as officially, by values above 256 (so a dark uint16
        image stays 16-bit here, where the official returns it as 8-bit). Grey goes through the
        network as RGB and comes back with OpenCV's luma weights, as officially.

        Returns ``(s*H, s*W[, C])`` of the input's dtype class (uint8 / uint16), or, when
        ``outscale`` differs from the network's factor, ``(int(H*outscale), int(W*outscale)[, C])``
        by a Lanczos resize of the network's result.
        """
        h_in, w_in = img.shape[:2]
        sixteen_bit = img.dtype == np.uint16 or np.max(img) > 256
        max_range = 65535.0 if sixteen_bit else 255.0
        img = img.astype(np.float32) / max_range
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[:, :, 0]

        alpha = None
        if img.ndim == 2:
            out = cv2.cvtColor(self._upscale_rgb(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)), cv2.COLOR_BGR2GRAY)
        else:
            if img.shape[2] == 4:
                alpha = img[:, :, 3]
            out = self._upscale_rgb(cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB))

        if alpha is not None:
            if self.alpha_upsampler == "model":
                alpha_up = cv2.cvtColor(self._upscale_rgb(cv2.cvtColor(alpha, cv2.COLOR_GRAY2RGB)), cv2.COLOR_BGR2GRAY)
            else:
                alpha_up = cv2.resize(alpha, (w_in * self.scale, h_in * self.scale), interpolation=cv2.INTER_LINEAR)
            out = np.concatenate([out, alpha_up[:, :, None]], axis=2)

        out = (out * max_range).round().astype(np.uint16 if sixteen_bit else np.uint8)
        if outscale is not None and outscale != float(self.scale):
            out = cv2.resize(out, (int(w_in * outscale), int(h_in * outscale)), interpolation=cv2.INTER_LANCZOS4)
        return out


def _round_up(n: int, multiple: int) -> int:
    return math.ceil(n / multiple) * multiple
