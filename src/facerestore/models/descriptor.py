"""What a loaded network is and how to call it, so callers never guess.

:func:`describe` looks at a built module once and answers: which architecture, for what
purpose (face restoration, upscaling, detection, parsing, identity, discrimination), at which
scale and input size, with which input range, whether half precision is safe, and whether its
forward takes the StyleGAN noise switch. The pipeline checks a model's role against it at start-up
(a Real-ESRGAN file given as the face model is refused before any photo is read) and sizes the
face crops from it (a 256-px GFPGAN gets 256-px crops).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..archs.arcface import ResNetArcFace
from ..archs.codeformer import CodeFormer
from ..archs.gpen import FullGenerator
from ..archs.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from ..archs.gfpgan import GFPGANBilinear, GFPGANv1, GFPGANv1Clean
from ..archs.parsenet import ParseNet
from ..archs.restoreformer import RestoreFormer
from ..archs.retinaface import RetinaFace
from ..archs.rrdbnet import RRDBNet
from .zoo import CODEFORMER_LICENSE, GPEN_LICENSE

__all__ = ["ModelDescriptor", "Purpose", "describe", "purpose_of_architecture", "require_purpose"]


class Purpose(str, enum.Enum):
    FACE_RESTORATION = "face restoration"
    UPSCALING = "upscaling"
    FACE_DETECTION = "face detection"
    FACE_PARSING = "face parsing"
    IDENTITY = "face identity"
    DISCRIMINATOR = "discriminator (training only)"


@dataclass(frozen=True)
class ModelDescriptor:
    """How to use a network; see the module docstring.

    input_size: the square input the network was built for (faces), or None for any size.
    size_multiple: height and width must be multiples of this (None: any).
    input_range: the value range the forward expects, e.g. (-1, 1) for GFPGAN, (0, 1) for RRDBNet.
    takes_noise: the forward accepts ``return_rgb=`` and ``randomize_noise=`` (StyleGAN2 decoders).
    half_safe: fp16/bf16 give usable output without special care (see the speed notes).
    takes_fidelity: the forward takes a fidelity weight ``w`` (CodeFormer: 0 = quality, 1 = fidelity),
        which then replaces the blend of restored and input faces.
    license: the licence of the family's released weights ("" where facerestore does not track one);
        ``zoo.LICENSE_CONSENT`` lists those that need the user's explicit yes before a download.
    """

    architecture: str
    purpose: Purpose
    scale: int = 1
    input_size: int | None = None
    size_multiple: int | None = None
    input_range: tuple[float, float] = (0.0, 1.0)
    input_channels: int = 3
    takes_noise: bool = False
    half_safe: bool = False
    takes_fidelity: bool = False
    license: str = ""

    def __str__(self) -> str:
        size = f", {self.input_size}x{self.input_size} input" if self.input_size else ""
        scale = f", x{self.scale}" if self.scale != 1 else ""
        return f"{self.architecture} ({self.purpose.value}{scale}{size})"


def _gfpgan_size(model: nn.Module) -> int:
    return 2 ** int(model.log_size)


def describe(model: nn.Module) -> ModelDescriptor:
    """The descriptor of a built module; raises TypeError for a module facerestore cannot use.

    A network of one's own declares itself with a ``descriptor`` attribute (a ModelDescriptor).
    """
    declared = getattr(model, "descriptor", None)
    if isinstance(declared, ModelDescriptor):
        return declared
    name = type(model).__name__
    if isinstance(model, (GFPGANv1Clean, GFPGANBilinear, GFPGANv1)):
        # The StyleGAN2 style normalisation overflows in fp16 (GFPGAN #50); our forward keeps it
        # and the demodulation sums in fp32 (archs/stylegan2.py), which is what makes it half-safe.
        return ModelDescriptor(name, Purpose.FACE_RESTORATION, input_size=_gfpgan_size(model),
                               input_range=(-1.0, 1.0), takes_noise=True, half_safe=True, license="Apache-2.0")
    if isinstance(model, RestoreFormer):  # and RestoreFormerPlusPlus
        # Codebook distances stay in fp32 (archs/restoreformer.py).
        return ModelDescriptor(name, Purpose.FACE_RESTORATION, input_size=512, input_range=(-1.0, 1.0),
                               size_multiple=32, half_safe=True, license="Apache-2.0")
    if isinstance(model, CodeFormer):
        # half: not measured (its codes are picked by argmax over a softmax computed in the input dtype)
        return ModelDescriptor(name, Purpose.FACE_RESTORATION, input_size=512, input_range=(-1.0, 1.0),
                               takes_fidelity=True, license=CODEFORMER_LICENSE)
    if isinstance(model, FullGenerator):
        # half: not measured (the StyleGAN2 pieces keep their sums in fp32, the encoder does not)
        return ModelDescriptor(name, Purpose.FACE_RESTORATION, input_size=int(model.size), input_range=(-1.0, 1.0),
                               license=GPEN_LICENSE)
    if isinstance(model, RRDBNet):
        scale = int(model.scale)
        # x2 and x1 models start with a pixel-unshuffle by 2 and 4.
        multiple = {1: 4, 2: 2}.get(scale)
        return ModelDescriptor(name, Purpose.UPSCALING, scale=scale, size_multiple=multiple, half_safe=True)
    if isinstance(model, RetinaFace):
        return ModelDescriptor(name, Purpose.FACE_DETECTION, input_range=(-123.0, 151.0))
    if isinstance(model, ParseNet):
        return ModelDescriptor(name, Purpose.FACE_PARSING, input_size=512, input_range=(-1.0, 1.0))
    if isinstance(model, ResNetArcFace):
        return ModelDescriptor(name, Purpose.IDENTITY, input_size=128, input_range=(-1.0, 1.0),
                               input_channels=1)
    if isinstance(model, (StyleGAN2Discriminator, FacialComponentDiscriminator)):
        return ModelDescriptor(name, Purpose.DISCRIMINATOR, input_range=(-1.0, 1.0))
    raise TypeError(f"{name} is not a network facerestore knows; give it a `descriptor` attribute "
                    f"(facerestore.models.ModelDescriptor) saying what it is and how to call it")


_ROLE_HINTS = {
    Purpose.FACE_RESTORATION: "a GFPGAN, RestoreFormer(++), CodeFormer or GPEN file (e.g. GFPGANv1.4.pth)",
    Purpose.UPSCALING: "a Real-ESRGAN file (e.g. RealESRGAN_x2plus.pth)",
    Purpose.FACE_DETECTION: "a RetinaFace file (detection_Resnet50_Final.pth)",
    Purpose.FACE_PARSING: "a ParseNet file (parsing_parsenet.pth)",
    Purpose.IDENTITY: "an ArcFace file (arcface_resnet18.pth)",
}


_PURPOSE_OF_CLASS: dict[type, Purpose] = {
    GFPGANv1: Purpose.FACE_RESTORATION, GFPGANv1Clean: Purpose.FACE_RESTORATION,
    GFPGANBilinear: Purpose.FACE_RESTORATION, RestoreFormer: Purpose.FACE_RESTORATION,
    RRDBNet: Purpose.UPSCALING, RetinaFace: Purpose.FACE_DETECTION, ParseNet: Purpose.FACE_PARSING,
    ResNetArcFace: Purpose.IDENTITY, StyleGAN2Discriminator: Purpose.DISCRIMINATOR,
    FacialComponentDiscriminator: Purpose.DISCRIMINATOR,
}


def purpose_of_architecture(architecture: type | str) -> Purpose | None:
    """What a known architecture (class or class name, as the zoo names them) is for, without
    building it: for checks at start-up that must not load every network. None when unknown."""
    for cls, purpose in _PURPOSE_OF_CLASS.items():
        if architecture is cls or architecture == cls.__name__:
            return purpose
    return None


def require_purpose(descriptor: ModelDescriptor, purpose: Purpose, role: str, source: Any = None) -> None:
    """Refuse a network given for the wrong job, naming the option and what it expects."""
    if descriptor.purpose is purpose:
        return
    where = f"{source}: " if source is not None else ""
    raise ValueError(f"{where}{role} needs {_ROLE_HINTS.get(purpose, purpose.value)}, "
                     f"but this is {descriptor}")

