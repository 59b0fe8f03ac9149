"""The networks of a training run: built from their option blocks, and the pretrained files they
read (with where to get each one that is missing)."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import NETWORK_TYPES, TrainConfig, TrainSetupError

ARCHS = NETWORK_TYPES  # the architectures an option file may name (config.NETWORK_TYPES)


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


def resolve_file(path: str | Path) -> Path:
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
    entry = zoo.find_entry("vgg19")
    found = zoo.locate(entry) if entry is not None else None
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
        if entry is None:
            problems.append(f"{what}: {path} not found")
            return
        where = f"put it at {path}" if path else f"put it at {zoo.cached_path(entry)}"
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
