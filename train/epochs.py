"""What every family's trainer shares: the device, the seeding, Adam for G and D and the
original's epoch schedule (`lr` for `niter` epochs, then linear decay to zero over `niter_decay`
epochs; `max_iters` cuts a run short), stated once here.

A training config has the fields `data`, `output`, `device`, `seed`, `batch_size`, `lr`,
`beta1`, `beta2`, `niter`, `niter_decay` and `max_iters` (both families' use the original
options' names).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from p2phd.common.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """'auto' is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: CUDA is not available on this machine")
    return device


def check_epochs(niter: int, niter_decay: int) -> None:
    """A training config's epoch counts, checked the same for every family."""
    if niter < 0 or niter_decay < 0 or niter + niter_decay < 1:
        raise ConfigError("niter and niter_decay must be >= 0 with at least one epoch in all")


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
