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
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..archs.arcface import ResNetArcFace
from ..archs.discriminators import FacialComponentDiscriminator, StyleGAN2Discriminator
from ..archs.gfpgan import GFPGANBilinear, GFPGANv1, GFPGANv1Clean
from .dataset import FFHQDataConfig

OFFICIAL_EMA_DECAY = 0.5 ** (32 / (10 * 1000))
# the architectures a ``network_*`` block may name (``type``); its other keys are constructor keywords
NETWORK_TYPES: dict[str, type[nn.Module]] = {
    "GFPGANv1": GFPGANv1, "GFPGANv1Clean": GFPGANv1Clean, "GFPGANBilinear": GFPGANBilinear,
    "StyleGAN2Discriminator": StyleGAN2Discriminator, "FacialComponentDiscriminator": FacialComponentDiscriminator,
    "ResNetArcFace": ResNetArcFace,
}


class ConfigError(ValueError):
    """An option file that cannot be used; the message says which key and what to do."""


class TrainSetupError(RuntimeError):
    """Training cannot start (missing files, bad options); the message says what to do."""


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
class OptimizerOptions:
    """``train.optim_g`` / ``optim_d`` / ``optim_component``. The betas are the official ones, set by
    the trainer (not an option, as in the official code)."""
    type: str = "Adam"
    lr: float = 2e-3
    weight_decay: float | None = None  # None: the optimizer's default
    eps: float | None = None
    amsgrad: bool | None = None

    def extra(self) -> dict[str, Any]:
        return {k: v for k, v in (("weight_decay", self.weight_decay), ("eps", self.eps), ("amsgrad", self.amsgrad))
                if v is not None}


@dataclass
class SchedulerOptions:
    """``train.scheduler``: MultiStepLR (torch's default gamma 0.1 when it is not given)."""
    type: str = "MultiStepLR"
    milestones: list = field(default_factory=list)
    gamma: float = 0.1


@dataclass
class L1LossOptions:
    """``train.pixel_opt`` / ``L1_opt`` (BasicSR ``L1Loss``)."""
    type: str = "L1Loss"
    loss_weight: float = 1.0
    reduction: str = "mean"


@dataclass
class PerceptualLossOptions:
    """``train.perceptual_opt`` (BasicSR ``PerceptualLoss``: VGG19 features, perceptual and Gram style)."""
    layer_weights: dict = field(default_factory=dict)
    type: str = "PerceptualLoss"
    vgg_type: str = "vgg19"
    use_input_norm: bool = True
    range_norm: bool = False
    perceptual_weight: float = 1.0
    style_weight: float = 0.0
    criterion: str = "l1"


@dataclass
class GANLossOptions:
    """``train.gan_opt`` / ``gan_component_opt`` (BasicSR ``GANLoss``)."""
    type: str = "GANLoss"
    gan_type: str = "wgan_softplus"
    real_label_val: float = 1.0
    fake_label_val: float = 0.0
    loss_weight: float = 1.0


@dataclass
class TrainOptions:
    optim_g: OptimizerOptions = field(default_factory=OptimizerOptions)
    optim_d: OptimizerOptions = field(default_factory=OptimizerOptions)
    optim_component: OptimizerOptions = field(default_factory=OptimizerOptions)
    scheduler: SchedulerOptions = field(default_factory=lambda: SchedulerOptions(milestones=[600000, 700000],
                                                                                  gamma=0.5))
    total_iter: int = 800000
    warmup_iter: int = -1
    pixel_opt: L1LossOptions | None = None
    L1_opt: L1LossOptions = field(default_factory=L1LossOptions)
    pyramid_loss_weight: float = 0
    remove_pyramid_loss: float = math.inf
    perceptual_opt: PerceptualLossOptions | None = None
    gan_opt: GANLossOptions = field(default_factory=lambda: GANLossOptions(loss_weight=0.1))
    r1_reg_weight: float = 10
    gan_component_opt: GANLossOptions | None = None
    comp_style_weight: float = 0
    identity_weight: float = 0
    net_d_iters: int = 1
    net_d_init_iters: int = 0
    net_d_reg_every: int = 16
    ema_decay: float = OFFICIAL_EMA_DECAY  # facerestore


# the typed blocks inside ``train`` (each checked against its own keys)
TRAIN_BLOCKS: dict[str, type] = {
    "optim_g": OptimizerOptions, "optim_d": OptimizerOptions, "optim_component": OptimizerOptions,
    "scheduler": SchedulerOptions, "pixel_opt": L1LossOptions, "L1_opt": L1LossOptions,
    "perceptual_opt": PerceptualLossOptions, "gan_opt": GANLossOptions, "gan_component_opt": GANLossOptions,
}
GAN_TYPES = ("wgan_softplus", "vanilla", "wgan", "lsgan", "hinge")


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


def _fill(cls: type, data: dict | None, where: str, ignore: frozenset[str] | set[str] = frozenset()) -> Any:
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


def _number(value: Any, where: str, *, integer: bool = False, minimum: float | None = None,
            above: float | None = None, allow_inf: bool = False) -> Any:
    """A number from the option file, or a ConfigError naming the key. YAML 1.1 reads '2e-3' as a
    string unless tagged !!float; such strings are accepted."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {value!r} is not a number")
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    if integer:
        if not math.isinf(value) and value != int(value):
            raise ConfigError(f"{where}: {value!r} is not a whole number")
        value = int(value) if not math.isinf(value) else value
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {value!r} is too small; it must be at least {minimum}")
    if above is not None and value <= above:
        raise ConfigError(f"{where}: {value!r} is too small; it must be greater than {above}")
    return value


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: {value!r} is not available; choose from {list(choices)}")
    return value


def _check_numbers(obj: Any, where: str, rules: dict[str, dict[str, Any]]) -> None:
    """Replace each named field of ``obj`` by its checked number (see :func:`_number`)."""
    for key, rule in rules.items():
        value = getattr(obj, key)
        if value is None and rule.get("optional"):
            continue
        rule = {k: v for k, v in rule.items() if k != "optional"}
        setattr(obj, key, _number(value, f"{where}.{key}", **rule))


POSITIVE = {"above": 0}
NON_NEGATIVE = {"minimum": 0}
COUNT = {"integer": True, "minimum": 1}


def _check_train(train: TrainOptions, where: str) -> None:
    """Every value of ``train`` that the step reads: numbers in range, known kinds."""
    from ..archs.vgg import vgg19_layer_names

    for key in ("optim_g", "optim_d", "optim_component"):
        o: OptimizerOptions = getattr(train, key)
        _choice(o.type, f"{where}.{key}.type", ("Adam", "AdamW"))
        _check_numbers(o, f"{where}.{key}", {"lr": POSITIVE, "weight_decay": dict(NON_NEGATIVE, optional=True),
                                             "eps": dict(POSITIVE, optional=True)})
    sched = train.scheduler
    _choice(sched.type, f"{where}.scheduler.type", ("MultiStepLR",))
    if not isinstance(sched.milestones, (list, tuple)):
        raise ConfigError(f"{where}.scheduler.milestones: {sched.milestones!r} is not a list of iterations")
    sched.milestones = [_number(m, f"{where}.scheduler.milestones", integer=True, minimum=0)
                        for m in sched.milestones]
    _check_numbers(sched, f"{where}.scheduler", {"gamma": POSITIVE})
    _check_numbers(train, where, {
        "total_iter": COUNT, "warmup_iter": {"integer": True}, "pyramid_loss_weight": NON_NEGATIVE,
        "remove_pyramid_loss": {"allow_inf": True}, "r1_reg_weight": NON_NEGATIVE,
        "comp_style_weight": NON_NEGATIVE, "identity_weight": NON_NEGATIVE, "net_d_iters": COUNT,
        "net_d_init_iters": {"integer": True, "minimum": 0}, "net_d_reg_every": COUNT,
        "ema_decay": NON_NEGATIVE})
    if train.ema_decay > 1:
        raise ConfigError(f"{where}.ema_decay: {train.ema_decay!r} is above 1")
    for key in ("pixel_opt", "L1_opt"):
        l1_opt: L1LossOptions | None = getattr(train, key)
        if l1_opt is not None:
            _choice(l1_opt.type, f"{where}.{key}.type", ("L1Loss",))
            _choice(l1_opt.reduction, f"{where}.{key}.reduction", ("mean",))
            _check_numbers(l1_opt, f"{where}.{key}", {"loss_weight": NON_NEGATIVE})
    p = train.perceptual_opt
    if p is not None:
        w = f"{where}.perceptual_opt"
        _choice(p.type, f"{w}.type", ("PerceptualLoss",))
        _choice(p.vgg_type, f"{w}.vgg_type", ("vgg19",))
        _choice(p.criterion, f"{w}.criterion", ("l1", "l2", "fro"))
        _check_numbers(p, w, {"perceptual_weight": NON_NEGATIVE, "style_weight": NON_NEGATIVE})
        if not isinstance(p.layer_weights, dict) or not p.layer_weights:
            raise ConfigError(f"{w}.layer_weights: give a mapping of VGG19 layers to weights, e.g. conv5_4: 1")
        known = vgg19_layer_names()
        p.layer_weights = {_choice(k, f"{w}.layer_weights", tuple(known)):
                           _number(v, f"{w}.layer_weights.{k}", minimum=0) for k, v in p.layer_weights.items()}
    for key in ("gan_opt", "gan_component_opt"):
        g = getattr(train, key)
        if g is not None:
            _choice(g.type, f"{where}.{key}.type", ("GANLoss",))
            _choice(g.gan_type, f"{where}.{key}.gan_type", GAN_TYPES)
            _check_numbers(g, f"{where}.{key}", {"loss_weight": NON_NEGATIVE, "real_label_val": {},
                                                "fake_label_val": {}})


def _check_network(block: Any, where: str) -> None:
    """A ``network_*`` block: a known ``type`` and only keywords its constructor takes."""
    if not isinstance(block, dict) or "type" not in block:
        raise ConfigError(f"{where}: needs a 'type' (one of {sorted(NETWORK_TYPES)})")
    cls = NETWORK_TYPES.get(block["type"])
    if cls is None:
        raise ConfigError(f"{where}.type: {block['type']!r} is not available; choose from {sorted(NETWORK_TYPES)}")
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = sorted(k for k in params if k != "self")
        unknown = sorted(set(block) - set(known) - {"type"})
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {unknown}; known: {known}")


def _check_data(data: FFHQDataConfig, where: str) -> None:
    _check_numbers(data, where, {"batch_size_per_gpu": COUNT, "num_worker_per_gpu": {"integer": True, "minimum": 0},
                                 "dataset_enlarge_ratio": COUNT, "out_size": {"integer": True, "minimum": 8},
                                 "eye_enlarge_ratio": POSITIVE})
    backend = data.io_backend or {"type": "disk"}
    if not isinstance(backend, dict):
        raise ConfigError(f"{where}.io_backend: {backend!r} is not a mapping like {{type: disk}}")
    unknown = sorted(set(backend) - {"type", "db_paths", "client_keys"})
    if unknown:
        raise ConfigError(f"{where}.io_backend: unknown option(s) {unknown}; known: ['client_keys', 'db_paths', "
                          f"'type']")
    _choice(backend.get("type", "disk"), f"{where}.io_backend.type", ("disk", "lmdb"))


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
    for key in ("network_g", "network_d", "network_d_left_eye", "network_d_right_eye", "network_d_mouth",
                "network_identity"):
        if opt.get(key) is not None:
            _check_network(opt[key], f"{where}: {key}")
    tblock = opt.pop("train", None) or {}
    if not isinstance(tblock, dict):
        raise ConfigError(f"{where}: 'train' is not a mapping of options")
    tblock = dict(tblock)
    blocks = {}
    for key, cls in TRAIN_BLOCKS.items():
        if key in tblock:
            value = tblock.pop(key)
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{where}: train.{key}: {value!r} is not a mapping of options")
            blocks[key] = None if value is None else _fill(cls, value, f"{where}: train.{key}")
    train = _fill(TrainOptions, tblock, f"{where}: train", ignore=set(TRAIN_BLOCKS))
    for key, value in blocks.items():
        if value is None and key in ("optim_g", "optim_d", "optim_component", "scheduler", "L1_opt", "gan_opt"):
            raise ConfigError(f"{where}: train.{key} is empty; remove the key for the default or fill it in")
        setattr(train, key, value)
    if train.remove_pyramid_loss is None:
        train.remove_pyramid_loss = math.inf
    _check_train(train, f"{where}: train")
    _check_data(train_data, f"{where}: datasets.train")
    cfg = TrainConfig(
        name=str(opt.pop("name", "train")),
        network_g=dict(opt.pop("network_g")), network_d=dict(opt.pop("network_d")),
        train_data=train_data, val_data=val_data,
        network_d_left_eye=opt.pop("network_d_left_eye", None),
        network_d_right_eye=opt.pop("network_d_right_eye", None),
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
    _check_numbers(cfg.logger, f"{where}: logger", {"print_freq": COUNT, "save_checkpoint_freq": COUNT})
    if cfg.val is not None:
        _check_numbers(cfg.val, f"{where}: val", {"val_freq": COUNT})
    if cfg.manual_seed is not None:
        cfg.manual_seed = _number(cfg.manual_seed, f"{where}: manual_seed", integer=True, minimum=0)
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
