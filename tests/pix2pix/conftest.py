"""Checkpoints in the original pix2pix/CycleGAN layout, made by the tests (random weights,
BatchNorm running statistics set to non-trivial values), and what the original code computes."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.networks import build_generator


def original_generator(cfg: Pix2PixConfig, seed: int = 0) -> nn.Module:
    """A generator with the original's modules (plain BatchNorm2d) and random weights: affine
    parameters and running statistics far from their defaults, so each mode is distinguishable."""
    torch.manual_seed(seed)
    net = build_generator(cfg, "eval")
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.rand(n, generator=g) * 0.4 - 0.2
            m.running_mean.data = torch.rand(n, generator=g) * 0.6 - 0.3
            m.running_var.data = torch.rand(n, generator=g) * 1.5 + 0.5
            m.num_batches_tracked.fill_(1234)
    return net


def save_original(net: nn.Module, path: Path, prefix: str = "") -> Path:
    torch.save({prefix + k: v for k, v in net.state_dict().items()}, path)
    return path


def original_output(net: nn.Module, x: torch.Tensor, bn_mode: str) -> torch.Tensor:
    """What the original test script computes, dropout off: with "image-stats" BatchNorm in
    training mode on one image at a time (its default), with "eval" the running statistics."""
    net = copy.deepcopy(net).eval()
    with torch.no_grad():
        if bn_mode == "eval":
            return net(x)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train()
        return torch.cat([net(x[i : i + 1]) for i in range(len(x))])


def random_images(batch: int, h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Distinct smooth-ish uint8 images (each its own brightness and gradient)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = np.empty((batch, h, w, channels), np.uint8)
    for b in range(batch):
        base = rng.uniform(40, 200) + rng.uniform(-1, 1) * (xx / w * 60 + yy / h * 40)
        noise = rng.normal(0, 25, (h, w, channels))
        out[b] = np.clip(base[..., None] + noise, 0, 255).astype(np.uint8)
    return out


def to_input(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)


def to_uint8(out: torch.Tensor) -> np.ndarray:
    x = (out.numpy().transpose(0, 2, 3, 1) + 1) * 127.5
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


@pytest.fixture
def images():
    return random_images
