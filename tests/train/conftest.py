"""Fixtures for the training tests: a small synthetic dataset and a tiny training config."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2phd.train.pix2pixhd.train_config import load_train_config
from p2phd.train.synth import write_dataset

TINY_MODEL = [
    "model.ngf=4",
    "model.n_downsample_global=2",
    "model.n_blocks_global=1",
    "model.feat_num=2",
    "model.nef=4",
    "model.n_downsample_E=2",
    "ndf=8",
]


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """Six synthetic 32x64 scenes in the flat layout, shared read-only by the tests."""
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, 6, (32, 64), seed=7)
    return root


@pytest.fixture
def tiny_config(synth_data, tmp_path):
    """A factory for a tiny-model TrainConfig on `synth_data` writing into tmp_path/run."""

    def make(*overrides: str):
        base = [
            f"data={synth_data}",
            f"output={tmp_path / 'run'}",
            "size=[32,64]",
            "batch_size=2",
            "niter=50",
            "niter_decay=50",
            "checkpoint_every=1000",
            "sample_every=1000",
            *TINY_MODEL,
        ]
        return load_train_config(None, [*base, *overrides])

    return make
