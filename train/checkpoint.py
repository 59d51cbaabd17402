"""Our checkpoint format: one .pt holding the architecture, weights and everything to resume.

It stores only tensors, plain dicts, lists, numbers and strings, so it loads with
`torch.load(weights_only=True)` (nothing unpickled), and it carries its model config (which
names the family), so nothing about the architecture is repeated on the command line. Written
atomically: a run killed mid-save leaves the previous file intact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from p2phd.common.atomic import atomic_path
from p2phd.common.errors import CheckpointError, ConfigError
from p2phd.train.families import config_from_json

FORMAT = "p2phd-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint; training state is empty in a weights-only one."""

    model_config: Any  # a config of one of the families (families.py)
    generator_state: dict[str, torch.Tensor]
    encoder_state: dict[str, torch.Tensor] | None = None
    train_config: dict | None = None
    discriminator_state: dict[str, torch.Tensor] | None = None
    optimizer_states: dict[str, dict] = field(default_factory=dict)
    iteration: int = 0
    epoch: int = 0
    epoch_iter: int = 0
    rng: dict | None = None

    @property
    def resumable(self) -> bool:
        return self.discriminator_state is not None and bool(self.optimizer_states)


def capture_rng() -> dict:
    """The torch, CUDA, numpy and python RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    """Undo `capture_rng`: the next random numbers are those the saved run would have drawn."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write `ckpt` to `path` atomically."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": ckpt.model_config.to_json(),
        "train_config": ckpt.train_config,
        "generator": ckpt.generator_state,
        "encoder": ckpt.encoder_state,
        "discriminator": ckpt.discriminator_state,
        "optimizers": ckpt.optimizer_states,
        "iteration": ckpt.iteration,
        "epoch": ckpt.epoch,
        "epoch_iter": ckpt.epoch_iter,
        "rng": ckpt.rng,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


# The paragraphs torch wraps around why weights-only unpickling refused a file.
_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _reason(e: Exception) -> str:
    """Why torch.load refused a file, without the page of advice around it."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(_TORCH_BOILERPLATE)]
    return (said or lines or [type(e).__name__])[-1]


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (weights-only unpickling, onto the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable p2phd checkpoint ({_reason(e)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a p2phd checkpoint (for original pix2pixHD *_net_G.pth files use the "
            "original-checkpoint loader)"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {payload.get('version')}, expected {VERSION}"
        )
    try:
        model_config = config_from_json(payload["model_config"])
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return Checkpoint(
        model_config=model_config,
        generator_state=payload["generator"],
        encoder_state=payload.get("encoder"),
        train_config=payload.get("train_config"),
        discriminator_state=payload.get("discriminator"),
        optimizer_states=payload.get("optimizers") or {},
        iteration=int(payload.get("iteration", 0)),
        epoch=int(payload.get("epoch", 0)),
        epoch_iter=int(payload.get("epoch_iter", 0)),
        rng=payload.get("rng"),
    )


def strip_checkpoint(src: str | Path, dst: str | Path) -> Checkpoint:
    """Copy `src` to `dst` keeping only what inference needs: configs and G/E weights."""
    ckpt = load_checkpoint(src)
    slim = Checkpoint(
        model_config=ckpt.model_config,
        generator_state=ckpt.generator_state,
        encoder_state=ckpt.encoder_state,
        train_config=ckpt.train_config,
        iteration=ckpt.iteration,
        epoch=ckpt.epoch,
        epoch_iter=ckpt.epoch_iter,
    )
    save_checkpoint(dst, slim)
    return slim
