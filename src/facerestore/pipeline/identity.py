"""Identity score: is the restored face still the same person?

The cosine similarity of ArcFace embeddings of the input face and the restored face, computed
as the GFPGAN authors' "Deg." metric does (evaluation.md): the official ``arcface_resnet18.pth``,
grey input resized bilinearly to 128×128 and scaled by (x − 127.5) / 127.5. 1 is the same
embedding; the paper's mean angle of 34.6° for GFPGAN is a cosine of about 0.82, against ground
truth on synthetic data. Both faces are the aligned crops, so no further alignment is needed.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.identity import preprocess as identity_preprocess

__all__ = ["IdentityScorer", "load_identity_scorer", "UNAVAILABLE_NOTE"]

UNAVAILABLE_NOTE = ("identity scores are unavailable: the ArcFace weights (arcface_resnet18.pth) are not on "
                    "disk; get them with `facerestore models --download arcface-resnet18` or give "
                    "--identity-model FILE")


class IdentityScorer:
    """Embeds aligned BGR uint8 faces with an ArcFace network and compares them."""

    def __init__(self, net: nn.Module, device: str | torch.device = "cpu", source: str = "module") -> None:
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.source = source

    @torch.inference_mode()
    def embed(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, 512)`` float32 unit-length embeddings of BGR uint8 faces (any size)."""
        if len(faces) == 0:
            return np.zeros((0, 512), np.float32)
        batch = np.stack([_preprocess(face) for face in faces])
        emb = self.net(torch.from_numpy(batch).to(self.device)).float()
        return F.normalize(emb, dim=1).cpu().numpy()

    def scores(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray]) -> list[float]:
        """Cosine similarity of each (input face, restored face) pair, in [-1, 1]."""
        if len(inputs) != len(outputs):
            raise ValueError(f"{len(inputs)} input faces but {len(outputs)} restored faces")
        if not inputs:
            return []
        emb = self.embed([*inputs, *outputs])
        a, b = emb[: len(inputs)], emb[len(inputs):]
        return [float(np.clip(v, -1.0, 1.0)) for v in (a * b).sum(axis=1)]


def _preprocess(face: np.ndarray) -> np.ndarray:
    """(1, 128, 128) float32 in [-1, 1]: OpenCV's grey of the BGR face, then the Deg metric's own
    preprocessing, so that scores agree with :mod:`facerestore.metrics.identity` on the same pair."""
    grey = face if face.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(face[:, :, :3]), cv2.COLOR_BGR2GRAY)
    return identity_preprocess(grey)


def _warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


def load_identity_scorer(choice: object, device: str | torch.device = "cpu", *,
                         allow_download: bool = True, needed: bool = False,
                         on_note: Callable[[str], None] | None = None) -> IdentityScorer | None:
    """The scorer an ``identity_model`` option asks for.

    ``None``: no scoring. ``"auto"``: ArcFace when its weights are already on disk
    (never downloads); otherwise ``None``, silently unless ``needed`` (``--min-identity`` was
    asked for), then with one note that scores are unavailable. A zoo
    name, a file or a module: that network (a missing zoo file is downloaded when allowed; if it
    cannot be had, the same note, and the run goes on). Notes go to ``on_note`` (by default, a
    warning).
    """
    note = on_note if on_note is not None else _warn
    from ..models import zoo
    from ..models.descriptor import Purpose
    from ..models.loading import load

    if choice is None:  # "none" became None in RestoreOptions.validate
        return None
    if isinstance(choice, str) and choice.lower() == "auto":
        found = zoo.locate(zoo.find_entry("arcface-resnet18"))
        if found is None:
            if needed:
                note(UNAVAILABLE_NOTE)
            return None
        choice = found
    try:
        loaded = load(choice, device, allow_download=allow_download, purpose=Purpose.IDENTITY,
                      role="the identity model (--identity-model)")
    except zoo.ModelUnavailableError as exc:
        note(f"{UNAVAILABLE_NOTE} ({str(exc).splitlines()[0]})")
        return None
    return IdentityScorer(loaded.model, device, source=loaded.source)
