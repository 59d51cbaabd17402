"""A tiny model package, exported once per session through the real export path.

ngf 4, 2 downsamples, 1 residual block, label_nc 35 with instance edges and 3 feature channels,
feature clusters for a few classes and an encoder: every input block and style path is present,
yet a 64x128 render takes milliseconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from p2phd.engine.core.quality import synthetic_maps

CLUSTERED = {7: 4, 24: 3, 26: 5}  # class id -> number of k-means centres (road, person, car)


def tiny_config():
    from p2phd.train.pix2pixhd.config import ModelConfig

    return ModelConfig(
        label_nc=35,
        instance=True,
        feat_num=3,
        ngf=4,
        n_downsample_global=2,
        n_blocks_global=1,
        nef=4,
        n_downsample_E=2,
    )


@pytest.fixture(scope="session")
def tiny_package_source(tmp_path_factory) -> Path:
    """The exported tiny package (never modified: tests that write engines use `tiny_package`)."""
    import torch

    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pixhd.networks import build_encoder, build_generator

    torch.manual_seed(0)
    cfg = tiny_config()
    rng = np.random.default_rng(0)
    features = {
        c: rng.uniform(-1, 1, (k, cfg.feat_num)).astype(np.float32) for c, k in CLUSTERED.items()
    }
    out = tmp_path_factory.mktemp("pkg") / "tiny"
    return export_package(out, build_generator(cfg), cfg, build_encoder(cfg), features)


@pytest.fixture
def tiny_package(tiny_package_source, tmp_path) -> Path:
    """A private copy of the tiny package, free to fill with engines and quality reports."""
    return Path(shutil.copytree(tiny_package_source, tmp_path / "tiny"))


@pytest.fixture(scope="session")
def tiny_maps() -> tuple[np.ndarray, np.ndarray]:
    """Two 32x64 label/instance maps with car and person instances (Cityscapes-style ids)."""
    labels, instances = synthetic_maps(2, 32, 64, 35, seed=7)
    labels[:, 20:28, 8:24] = 26
    instances[:, 20:28, 8:24] = 26001
    labels[:, 4:12, 40:48] = 24
    instances[:, 4:12, 40:48] = 24000
    return labels, instances
