"""The training loop: data, iterations, logging, validation, checkpoints on schedule."""
from __future__ import annotations

import math
import random
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .checkpoints import load_training_state, resume_latest, save_checkpoint
from .config import TrainConfig, TrainSetupError
from .distributed import DistInfo, pick_device, setup_distributed, weights_spread
from .networks import missing_files
from .step import GFPGANTrainer


def tensor_to_uint8(x: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8 (BasicSR tensor2img with min_max (-1, 1))."""
    img = ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).numpy().transpose(1, 2, 0)
    return (img * 255.0).round().astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (BasicSR calculate_psnr, crop_border 0, RGB)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 * 255.0 / mse))


@torch.no_grad()
def validate(trainer: GFPGANTrainer, loader: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Mean PSNR and SSIM (BasicSR definitions, RGB, crop 0) of the EMA generator on a paired
    folder (fresh noise from a private RNG, so validating does not change the training's
    random stream)."""
    from ..metrics.psnr_ssim import ssim

    values: dict[str, list[float]] = {"psnr": [], "ssim": []}
    device = trainer.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        for batch in loader:
            out, _ = trainer.net_g_ema(batch["lq"].to(device))
            for o, g in zip(out, batch["gt"], strict=True):
                restored, reference = tensor_to_uint8(o), tensor_to_uint8(g)
                values["psnr"].append(psnr(restored, reference))
                values["ssim"].append(ssim(restored, reference))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in values.items()}


class BrokenBatchError(TrainSetupError):
    """The loader could not read a batch (a broken image); the last finished iteration is intact."""


def _batches(loader: Iterable[dict[str, Any]], done: int) -> Iterator[dict[str, Any]]:
    """The loader's batches; a read error (the dataset names the broken file) becomes BrokenBatchError,
    so that the loop saves the state of the last finished iteration before it stops."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
            done += 1
        except StopIteration:
            return
        except (ValueError, KeyError, OSError) as e:
            raise BrokenBatchError(f"iteration {done + 1}: could not read the batch: {e}; fix or remove the file "
                              f"(facerestore train --check-data lists every broken image), then continue with "
                              f"--auto-resume") from None
        yield batch


def check_data(cfg: TrainConfig) -> tuple[int, list[str]]:
    """Decode every training image (``datasets.train``) as the loader will: (how many, problems).

    Run by ``facerestore train --check-data`` before a long run rather than at every start: a full
    decode of FFHQ (70k images) takes minutes, which every resume after a preemption would pay."""
    from .dataset import FFHQDegradationDataset

    try:
        dataset = FFHQDegradationDataset(cfg.train_data)
    except (ValueError, OSError) as e:
        raise TrainSetupError(f"datasets.train: {e}") from None
    problems = []
    for i in range(len(dataset)):
        try:
            dataset.read_gt(i)
        except (ValueError, KeyError, OSError) as e:
            problems.append(str(e))
    return len(dataset), problems


class StopRequest:
    """SIGINT (Ctrl-C) and SIGTERM (a cluster's preemption) ask the loop to stop after the current
    iteration, which then saves a training state. A second signal stops at once."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum
        for sig, handler in self._previous.items():  # a second Ctrl-C is not caught
            signal.signal(sig, handler)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""


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
    if v is None:
        raise TrainSetupError("no datasets.val block: nothing to validate on")
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
    dist = setup_distributed(launcher, note=print_fn)
    device = pick_device(cfg, dist)
    seed = cfg.manual_seed if cfg.manual_seed is not None else 0
    root = cfg.experiments_root
    state_path = Path(cfg.path.resume_state) if cfg.path.resume_state else None
    # BasicSR seeds every process with seed + rank before building the networks
    random.seed(seed + dist.rank)
    np.random.seed(seed + dist.rank)
    torch.manual_seed(seed + dist.rank)
    trainer = GFPGANTrainer(cfg, device, dist)
    logger = _Logger(cfg, root, dist.is_main, print_fn)
    start_iter = 0
    if state_path is not None:
        start_iter = int(load_training_state(trainer, state_path)["iter"])
        logger.info(f"resumed from {state_path} at iteration {start_iter}")
    elif auto_resume:
        found = resume_latest(trainer, root, logger.info)
        if found is not None:
            state_path, start_iter = found[0], int(found[1]["iter"])
            logger.info(f"resumed from {state_path} at iteration {start_iter}")
    loader, sampler = make_train_loader(cfg, dist, seed)
    val_loader = make_val_loader(cfg) if cfg.val_data is not None and cfg.val is not None else None
    val_every = int(cfg.val.val_freq) if cfg.val is not None else 0
    iters_per_epoch = len(sampler) // cfg.train_data.batch_size_per_gpu
    total = int(cfg.train.total_iter)
    if max_iters is not None:
        total = min(total, start_iter + max_iters)
    logger.info(f"training {cfg.name}: {sampler.dataset_len} faces, {dist.world_size} process(es) on {device}, "
                f"batch {cfg.train_data.batch_size_per_gpu}/process, iterations {start_iter + 1}..{total}")
    it, epoch, last, t0 = start_iter, start_iter // iters_per_epoch, {}, time.time()
    save_every = int(cfg.logger.save_checkpoint_freq)
    stop = StopRequest()
    try:
        stop.__enter__()
        while it < total and stop.signal is None:
            epoch = it // iters_per_epoch
            sampler.set_epoch(epoch, start=(it % iters_per_epoch) * cfg.train_data.batch_size_per_gpu)
            for batch in _batches(loader, it):
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
                    save_checkpoint(trainer, root, it, epoch)
                if val_loader is not None and it % val_every == 0 and dist.is_main:
                    scores = validate(trainer, val_loader)
                    logger.info(f"validation at iter {it}: psnr {scores['psnr']:.4f} dB, ssim {scores['ssim']:.4f}")
                    logger.scalars(it, {f"metrics/{k}": v for k, v in scores.items()})
                if it >= total or stop.signal is not None:
                    break
        if stop.signal is not None:
            logger.info(f"{stop.name} at iteration {it}: saving a training state; continue with --auto-resume")
        if dist.enabled:
            logger.info(f"processes in sync: max weight difference {weights_spread(trainer.net_g, dist):.3g}")
        if dist.is_main:
            save_checkpoint(trainer, root, "latest", epoch)
            if it % save_every and it > start_iter:
                save_checkpoint(trainer, root, it, epoch)
    except BrokenBatchError:
        if dist.is_main and it > start_iter:
            save_checkpoint(trainer, root, it, epoch)
        raise
    finally:
        stop.__exit__()
        logger.close()
        if dist.enabled:
            torch.distributed.barrier()
    return {"iter": it, "losses": last, "root": root, "trainer": trainer, "stopped_by": stop.name or None}
