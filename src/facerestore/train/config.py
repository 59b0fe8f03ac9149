"""Training options: the official BasicSR/GFPGAN option files (``options/train_gfpgan_v1.yml``,
``train_gfpgan_v1_simple.yml``) read as they are, into typed dataclasses.

Same keys, same meanings. Keys the official files carry but that do not change the training here
(``model_type``, ``dist_params``, ``find_unused_parameters``, ``wandb``, ``prefetch_mode``) are
accepted and ignored. facerestore adds a few keys, all optional:

- ``random_init``: list of pretrained parts to replace by random weights when training without
  them (``decoder``, ``identity``, ``vgg19``): smoke tests and toy runs only.
- ``path.pretrain_vgg19``: the torchvision ``vgg19-dcbb9e9d.pth`` file (default: the zoo's).
- ``datasets.train.component_path: template``: the same eye/mouth boxes for every aligned face.
- ``datasets.train.seed_per_sample`` (default true): see ``dataset.py``.
- ``train.ema_decay`` (default the official 0.5 ** (32 / 10000)).
- ``device`` (default ``cuda`` when ``num_gpu`` is not 0 and CUDA is available, else ``cpu``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset import FFHQDataConfig

OFFICIAL_EMA_DECAY = 0.5 ** (32 / (10 * 1000))


class ConfigError(ValueError):
    """An option file that cannot be used; the message says which key and what to do."""


@dataclass
class ValDataConfig:
    dataroot_lq: str
    dataroot_gt: str
    name: str = "validation"
    type: str = "PairedImageDataset"
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)
    scale: int = 1
    io_backend: dict = field(default_factory=lambda: {"type": "disk"})


@dataclass
class PathConfig:
    pretrain_network_g: str | None = None
    param_key_g: str = "params"
    strict_load_g: bool | None = True
    pretrain_network_d: str | None = None
    strict_load_d: bool = True
    pretrain_network_d_left_eye: str | None = None
    pretrain_network_d_right_eye: str | None = None
    pretrain_network_d_mouth: str | None = None
    pretrain_network_identity: str | None = None
    pretrain_vgg19: str | None = None  # facerestore
    resume_state: str | None = None
    ignore_resume_networks: list = field(default_factory=list)
    experiments_root: str | None = None  # default experiments/<name>


@dataclass
class TrainOptions:
    optim_g: dict = field(default_factory=lambda: {"type": "Adam", "lr": 2e-3})
    optim_d: dict = field(default_factory=lambda: {"type": "Adam", "lr": 2e-3})
    optim_component: dict = field(default_factory=lambda: {"type": "Adam", "lr": 2e-3})
    scheduler: dict = field(default_factory=lambda: {"type": "MultiStepLR", "milestones": [600000, 700000],
                                                     "gamma": 0.5})
    total_iter: int = 800000
    warmup_iter: int = -1
    pixel_opt: dict | None = None
    L1_opt: dict = field(default_factory=lambda: {"type": "L1Loss", "loss_weight": 1, "reduction": "mean"})
    pyramid_loss_weight: float = 0
    remove_pyramid_loss: float = math.inf
    perceptual_opt: dict | None = None
    gan_opt: dict = field(default_factory=lambda: {"type": "GANLoss", "gan_type": "wgan_softplus",
                                                   "loss_weight": 0.1})
    r1_reg_weight: float = 10
    gan_component_opt: dict | None = None
    comp_style_weight: float = 0
    identity_weight: float = 0
    net_d_iters: int = 1
    net_d_init_iters: int = 0
    net_d_reg_every: int = 16
    ema_decay: float = OFFICIAL_EMA_DECAY  # facerestore


@dataclass
class ValOptions:
    val_freq: float = 5e3
    save_img: bool = False
    metrics: dict | None = None
    pbar: bool = False
    suffix: str | None = None


@dataclass
class LoggerOptions:
    print_freq: int = 100
    save_checkpoint_freq: float = 5e3
    use_tb_logger: bool = True
    wandb: dict | None = None


@dataclass
class TrainConfig:
    name: str
    network_g: dict
    network_d: dict
    train_data: FFHQDataConfig
    val_data: ValDataConfig | None = None
    network_d_left_eye: dict | None = None
    network_d_right_eye: dict | None = None
    network_d_mouth: dict | None = None
    network_identity: dict | None = None
    path: PathConfig = field(default_factory=PathConfig)
    train: TrainOptions = field(default_factory=TrainOptions)
    val: ValOptions | None = None
    logger: LoggerOptions = field(default_factory=LoggerOptions)
    manual_seed: int | None = None
    num_gpu: int | str = "auto"
    model_type: str = "GFPGANModel"
    random_init: list = field(default_factory=list)  # facerestore
    device: str | None = None  # facerestore
    source: str | None = None  # the file it came from

    @property
    def use_facial_disc(self) -> bool:
        return all(getattr(self, k) is not None for k in ("network_d_left_eye", "network_d_right_eye",
                                                           "network_d_mouth"))

    @property
    def use_identity(self) -> bool:
        return self.network_identity is not None

    @property
    def experiments_root(self) -> Path:
        return Path(self.path.experiments_root or Path("experiments") / self.name)


_IGNORED_TOP = {"dist_params", "find_unused_parameters", "is_train", "dist", "rank", "world_size", "scale"}
RANDOM_INIT_PARTS = ("decoder", "identity", "vgg19")


def _fill(cls: type, data: dict | None, where: str, ignore: set[str] = frozenset()) -> Any:
    """Build dataclass ``cls`` from a mapping, naming an unknown key instead of ignoring a typo."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names - set(ignore))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: v for k, v in data.items() if k in names}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _floatify(d: dict | None) -> dict | None:
    """YAML 1.1 reads '2e-3' as a string unless tagged !!float; accept both."""
    if d is None:
        return None
    out = {}
    for k, v in d.items():
        if isinstance(v, str):
            try:
                v = float(v) if any(c in v for c in ".eE") and not v.isalpha() else v
            except ValueError:
                pass
        out[k] = v
    return out


def config_from_dict(opt: dict, source: str | None = None) -> TrainConfig:
    """A TrainConfig from an already-parsed option dict (same structure as the YAML)."""
    where = source or "options"
    if not isinstance(opt, dict) or "network_g" not in opt:
        raise ConfigError(f"{where}: not a training option file (no 'network_g' section)")
    opt = dict(opt)
    datasets = opt.pop("datasets", None) or {}
    if "train" not in datasets:
        raise ConfigError(f"{where}: 'datasets.train' is missing")
    tdata = dict(datasets["train"])
    if tdata.get("type", "FFHQDegradationDataset") != "FFHQDegradationDataset":
        raise ConfigError(f"{where}: datasets.train.type {tdata.get('type')!r}: only FFHQDegradationDataset")
    train_data = _fill(FFHQDataConfig, tdata, f"{where}: datasets.train")
    val_data = None
    if datasets.get("val"):
        val_data = _fill(ValDataConfig, datasets["val"], f"{where}: datasets.val")
    for key in ("network_g", "network_d"):
        if not isinstance(opt.get(key), dict) or "type" not in opt[key]:
            raise ConfigError(f"{where}: '{key}' needs a 'type'")
    train = _fill(TrainOptions, opt.pop("train", None), f"{where}: train")
    for k in ("optim_g", "optim_d", "optim_component", "scheduler", "pixel_opt", "L1_opt", "perceptual_opt",
              "gan_opt", "gan_component_opt"):
        setattr(train, k, _floatify(getattr(train, k)))
    train.remove_pyramid_loss = float(train.remove_pyramid_loss) if train.remove_pyramid_loss is not None \
        else math.inf
    cfg = TrainConfig(
        name=str(opt.pop("name", "train")),
        network_g=dict(opt.pop("network_g")), network_d=dict(opt.pop("network_d")),
        train_data=train_data, val_data=val_data,
        network_d_left_eye=opt.pop("network_d_left_eye", None), network_d_right_eye=opt.pop("network_d_right_eye", None),
        network_d_mouth=opt.pop("network_d_mouth", None), network_identity=opt.pop("network_identity", None),
        path=_fill(PathConfig, opt.pop("path", None), f"{where}: path"),
        train=train,
        val=_fill(ValOptions, opt.pop("val"), f"{where}: val") if opt.get("val") else None,
        logger=_fill(LoggerOptions, opt.pop("logger", None), f"{where}: logger"),
        manual_seed=opt.pop("manual_seed", None), num_gpu=opt.pop("num_gpu", "auto"),
        model_type=opt.pop("model_type", "GFPGANModel"), random_init=list(opt.pop("random_init", None) or []),
        device=opt.pop("device", None), source=source)
    opt.pop("val", None)
    unknown = sorted(set(opt) - _IGNORED_TOP)
    if unknown:
        raise ConfigError(f"{where}: unknown top-level option(s) {unknown}")
    bad = sorted(set(cfg.random_init) - set(RANDOM_INIT_PARTS))
    if bad:
        raise ConfigError(f"{where}: random_init {bad}: choose from {list(RANDOM_INIT_PARTS)}")
    if cfg.model_type != "GFPGANModel":
        raise ConfigError(f"{where}: model_type {cfg.model_type!r}: only GFPGANModel is implemented")
    return cfg


def load_config(path: str | Path) -> TrainConfig:
    """Read an option file (YAML; needs ``pyyaml``: ``pip install 'facerestore[train]'``)."""
    try:
        import yaml
    except ImportError:
        raise ConfigError("reading option files needs PyYAML: pip install 'facerestore[train]'") from None
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"option file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            opt = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return config_from_dict(opt, str(path))
