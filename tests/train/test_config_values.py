"""Training configs and model architectures refuse values a run would take to a torch error, a
hang, an allocation of hundreds of GB or a silent no-op, naming the field (both families)."""

from __future__ import annotations

import re

import pytest

from p2phd.common.errors import ConfigError
from p2phd.train.pix2pix.train_config import Pix2PixTrainConfig
from p2phd.train.pix2pixhd.train_config import load_train_config

PIX2PIXHD_CASES = [
    ("lr=abc", "train config field lr: expected a number, got 'abc'"),  # was a TypeError trace
    ("niter=abc", "train config field niter: expected an integer"),
    ("flip=3", "train config field flip: expected true or false"),
    ("size=[1, x]", "field size: expected a list of integers or null"),
    ("lr=.nan", "field lr: expected a number, got nan"),
    ("model.ngf=1.5", "model config field ngf: expected an integer"),
    ("lr=-1", "lr must be > 0"),  # was torch's ValueError
    ("beta1=1", "beta1 must be in [0, 1)"),
    ("max_iters=-5", "max_iters must be >= 1"),  # trained 0 iterations and exited 0
    ("seed=-1", "seed must be in 0..4294967295"),  # was numpy's ValueError
    ("device=tpu", "device must be auto, cpu or cuda[:N]"),  # was torch's RuntimeError
    ("size=[100000, 100000]", "past the largest input p2phd serves"),  # a MemoryError
    ("model.ngf=100000", "ngf must be in 1..4096"),  # asked torch for 720 GB
    ("model.n_downsample_global=30", "n_downsample_global must be in 0..8"),  # hung
    ("model.ngf=512", "ngf x 2^n_downsample_global = 8192 channels; at most 4096"),
]


@pytest.mark.parametrize(("override", "said"), PIX2PIXHD_CASES)
def test_a_pix2pixhd_value_out_of_type_or_range_is_named(override, said):
    with pytest.raises(ConfigError, match=re.escape(said)):
        load_train_config(None, [override])


def test_the_shared_checks_hold_for_pix2pix_too():
    for field, value, said in [("seed", -1, "seed must be"), ("device", "tpu", "device must")]:
        with pytest.raises(ConfigError, match=said):
            Pix2PixTrainConfig.from_json({field: value})
    with pytest.raises(ConfigError, match="8192 channels inside; at most 4096"):
        Pix2PixTrainConfig.from_json({"model": {"netG": "unet_256", "ngf": 1024}})
    with pytest.raises(ConfigError, match="field lr: expected a number"):
        Pix2PixTrainConfig.from_json({"lr": "fast"})
