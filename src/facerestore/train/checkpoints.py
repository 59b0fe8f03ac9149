"""Checkpoints and training states: save, load, resume (the official folder layout)."""
from __future__ import annotations

import os
import random
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from .config import TrainSetupError
from .distributed import DistInfo
from .step import GFPGANTrainer


def save_checkpoint(trainer: GFPGANTrainer, root: Path, current_iter: int | str, epoch: int) -> None:
    """Official layout: models/net_g_<iter>.pth ({'params', 'params_ema'}), net_d_*.pth
    ({'params'}), training_states/<iter>.state (optimizers, schedulers, iteration, RNG). The state is
    written last, so a state on disk always has its networks."""
    models, states = root / "models", root / "training_states"
    models.mkdir(parents=True, exist_ok=True)
    states.mkdir(parents=True, exist_ok=True)
    sd = lambda net: OrderedDict((k, v.detach().cpu()) for k, v in net.state_dict().items())  # noqa: E731
    atomic_save({"params": sd(trainer.net_g), "params_ema": sd(trainer.net_g_ema)},
                models / f"net_g_{current_iter}.pth")
    atomic_save({"params": sd(trainer.net_d)}, models / f"net_d_{current_iter}.pth")
    for part, net in trainer.net_d_comp.items():
        atomic_save({"params": sd(net)}, models / f"net_d_{part}_{current_iter}.pth")
    if current_iter == "latest":
        return
    state = {"epoch": epoch, "iter": current_iter,
             "optimizers": [o.state_dict() for o in trainer.optimizers],
             "schedulers": [_scheduler_state(s) for s in trainer.schedulers],
             "rng": rng_state()}
    atomic_save(state, states / f"{current_iter}.state")


def _read(path: Path, what: str, state_path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainSetupError(f"{state_path}: its {what} {path} is missing") from None
    except Exception as e:  # noqa: BLE001 - torch raises many kinds on a damaged file
        raise TrainSetupError(f"{path}: damaged, not a readable {what} ({type(e).__name__}: {e})") from None


def load_training_state(trainer: GFPGANTrainer, state_path: Path) -> dict[str, Any]:
    """Load a training state and the networks saved with it (same folder layout). Everything is
    read and checked before the trainer changes; a damaged or incomplete file raises
    TrainSetupError naming it."""
    state_path = Path(state_path)
    state = _read(state_path, "training state", state_path)
    if not isinstance(state, dict) or not {"iter", "optimizers", "schedulers"} <= set(state):
        raise TrainSetupError(f"{state_path}: not a training state (no iter/optimizers/schedulers)")
    it = state["iter"]
    models = state_path.parent.parent / "models"
    files = {"net_g": _read(models / f"net_g_{it}.pth", "network file", state_path),
             "net_d": _read(models / f"net_d_{it}.pth", "network file", state_path)}
    for part in trainer.net_d_comp:
        files[f"net_d_{part}"] = _read(models / f"net_d_{part}_{it}.pth", "network file", state_path)
    if len(state["optimizers"]) != len(trainer.optimizers):
        raise TrainSetupError(f"{state_path}: saved with {len(state['optimizers'])} optimizers, "
                              f"these options make {len(trainer.optimizers)}")
    try:
        trainer.net_g.load_state_dict(files["net_g"]["params"])
        trainer.net_g_ema.load_state_dict(files["net_g"]["params_ema"])
        trainer.net_d.load_state_dict(files["net_d"]["params"])
        for part, net in trainer.net_d_comp.items():
            net.load_state_dict(files[f"net_d_{part}"]["params"])
        for o, s in zip(trainer.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for sch, s in zip(trainer.schedulers, state["schedulers"], strict=True):
            s = dict(s)
            s["milestones"] = Counter({int(k): v for k, v in s["milestones"].items()})
            sch.load_state_dict(s)
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise TrainSetupError(f"{state_path}: does not fit these options ({type(e).__name__}: {e})") from None
    if "rng" in state:
        set_rng_state(state["rng"], trainer.dist)
    return state


def _scheduler_state(s: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    state = dict(s.state_dict())
    state["milestones"] = {int(k): int(v) for k, v in state.get("milestones", {}).items()}  # Counter -> dict
    return state


def rng_state() -> dict[str, Any]:
    """Every RNG the training draws from, in weights_only-loadable types."""
    np_state = cast(tuple, np.random.get_state())  # legacy=True: ("MT19937", keys, pos, has_gauss, gauss)
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


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def list_states(root: Path) -> list[Path]:
    """The training states under <root>/training_states, newest (highest iteration) first."""
    folder = root / "training_states"
    if not folder.is_dir():
        return []
    states = [(int(m.group(1)), p) for p in folder.iterdir() if (m := re.fullmatch(r"(\d+)\.state", p.name))]
    return [p for _, p in sorted(states, reverse=True)]


def find_latest_state(root: Path) -> Path | None:
    """The training state with the highest iteration under <root>/training_states."""
    states = list_states(root)
    return states[0] if states else None


def resume_latest(trainer: GFPGANTrainer, root: Path, note: Callable[[str], None]) -> tuple[Path, dict] | None:
    """Auto-resume: load the newest training state that loads; each damaged one is skipped with a
    note naming it. None when there is no state; TrainSetupError when none of them loads."""
    states = list_states(root)
    skipped = []
    for path in states:
        try:
            return path, load_training_state(trainer, path)
        except TrainSetupError as e:
            note(f"note: skipping a damaged training state: {e}")
            skipped.append(str(path))
    if skipped:
        raise TrainSetupError(f"no training state under {root / 'training_states'} loads ({', '.join(skipped)}); "
                              f"delete them to start from scratch, or set path.resume_state")
    return None
