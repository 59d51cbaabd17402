"""What every family's trainer shares: the device, the seeding, Adam for G and D and the
original's epoch schedule (`lr` for `niter` epochs, then linear decay to zero over `niter_decay`
epochs; `max_iters` cuts a run short), stated once here.

A training config has the fields `data`, `output`, `device`, `seed`, `size`, `batch_size`,
`lr`, `beta1`, `beta2`, `niter`, `niter_decay` and `max_iters` (both families' use the original
options' names).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from p2phd.common.errors import ConfigError
from p2phd.engine.core.size_policy import check_servable


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    return device


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
SEED_MAX = 2**32 - 1  # numpy's legacy seeding, which the data loaders use


def check_shared(cfg) -> None:
    """The settings every family's training config has, checked the same for each: values a
    run would otherwise take to a torch error or a silent no-op."""
    if cfg.niter < 0 or cfg.niter_decay < 0 or cfg.niter + cfg.niter_decay < 1:
        raise ConfigError("niter and niter_decay must be >= 0 with at least one epoch in all")
    if cfg.max_iters is not None and cfg.max_iters < 1:
        raise ConfigError(f"max_iters must be >= 1 (null: the whole schedule), got {cfg.max_iters}")
    if not cfg.lr > 0:
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    if not 0 <= cfg.seed <= SEED_MAX:
        raise ConfigError(f"seed must be in 0..{SEED_MAX}, got {cfg.seed}")
    if not DEVICE.fullmatch(cfg.device):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {cfg.device!r}")
    if cfg.size is not None:
        check_servable(*cfg.size, f"size {cfg.size}")


def lr_at_epoch(cfg, epoch: int) -> float:
    """`lr` for `niter` epochs, then linear decay over `niter_decay` epochs (as the original)."""
    if epoch < cfg.niter or cfg.niter_decay == 0:
        return cfg.lr
    return cfg.lr * max(0.0, 1.0 - (epoch - cfg.niter) / cfg.niter_decay)


class EpochTrainer:
    """The base of a family's trainer: one run in `cfg.output`, seeded, on `cfg.device`. The
    subclass sets `dataset` (with `len`), `opt_G` and `opt_D` (see `adam`), and counts
    `iteration` and `epoch`, calling `begin_epoch` at the start of each."""

    dataset: object
    opt_G: torch.optim.Optimizer  # noqa: N815  (the original's names)
    opt_D: torch.optim.Optimizer  # noqa: N815

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.out = Path(cfg.output)
        self.device = resolve_device(cfg.device)
        if not cfg.data:
            raise ConfigError("data: the dataset directory is not set")
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.iteration = self.epoch = 0

    def adam(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.cfg.lr, betas=(self.cfg.beta1, self.cfg.beta2))

    @property
    def batches_per_epoch(self) -> int:
        return -(-len(self.dataset) // self.cfg.batch_size)

    @property
    def total_iters(self) -> int:
        total = (self.cfg.niter + self.cfg.niter_decay) * self.batches_per_epoch
        return min(total, self.cfg.max_iters) if self.cfg.max_iters else total

    def begin_epoch(self) -> float:
        """Set this epoch's learning rate on both optimizers; return it."""
        lr = lr_at_epoch(self.cfg, self.epoch)
        for opt in (self.opt_G, self.opt_D):
            for group in opt.param_groups:
                group["lr"] = lr
        return lr
