"""Distributed training (torchrun): the process group, and gradients averaged by hand.

Gradients are averaged over processes before every optimizer step, which is what
DistributedDataParallel does; doing it by hand keeps R1's double backward, the toggled
``requires_grad`` and the unused style MLP free of DDP's special cases.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .config import TrainConfig, TrainSetupError


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


def setup_distributed(launcher: str, note: Callable[[str], None] | None = None) -> DistInfo:
    """torchrun's environment -> an initialised process group (NCCL on GPUs, gloo on CPU).

    ``RANK`` without ``WORLD_SIZE`` is a half-set environment (e.g. RANK exported by a scheduler
    script, without torchrun): an error under ``--launcher pytorch``, a note and one process under
    ``auto``, never silently ignored."""
    has_rank, has_world = "RANK" in os.environ, "WORLD_SIZE" in os.environ
    if has_rank != has_world and launcher != "none":
        half = ("RANK is set without WORLD_SIZE" if has_rank else "WORLD_SIZE is set without RANK")
        if launcher == "pytorch":
            raise TrainSetupError(f"{half}: start the processes with torchrun (it sets both), or unset it")
        (note or (lambda m: print(m, file=sys.stderr)))(
            f"note: {half}; training in one process (start with torchrun for several)")
        return DistInfo()
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
