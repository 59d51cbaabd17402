"""pix2pix training on synthetic pairs: `p2phd synth --pix2pix` writes both layouts, a short run
lowers the L1 loss, and its checkpoint exports to an image package through `p2phd export`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from p2phd.common.errors import ConfigError, InputError
from p2phd.engine.apps.cli import main
from p2phd.engine.core.renderer import Renderer
from p2phd.train.pix2pix.data import Pix2PixDataset
from p2phd.train.pix2pix.train_config import Pix2PixTrainConfig
from p2phd.train.pix2pix.trainer import Pix2PixTrainer


def test_synth_layouts_hold_the_same_pairs(tmp_path):
    assert (
        main(["synth", "--pix2pix", "-o", str(tmp_path / "ab"), "-n", "2", "--size", "32x48"]) == 0
    )
    assert main(["synth", "--pix2pix", "split", "-o", str(tmp_path / "s"), "-n", "2",
                 "--size", "32x48"]) == 0  # fmt: skip
    ab = np.asarray(Image.open(tmp_path / "ab" / "train" / "synth_0_00001.png"))
    a = np.asarray(Image.open(tmp_path / "s" / "trainA" / "synth_0_00001.png"))
    b = np.asarray(Image.open(tmp_path / "s" / "trainB" / "synth_0_00001.png"))
    assert ab.shape == (32, 96, 3) and np.array_equal(ab, np.concatenate([a, b], axis=1))
    aligned = Pix2PixDataset(tmp_path / "ab", "train", (32, 48), "BtoA").load(1)
    split = Pix2PixDataset(tmp_path / "s", "train", (32, 48), "BtoA").load(1)
    for k in "AB":
        assert aligned[k].shape == (3, 32, 48) and np.allclose(aligned[k], split[k])
    assert np.abs(aligned["A"].numpy().transpose(1, 2, 0) - (b / 127.5 - 1)).max() < 1e-6  # BtoA
    (tmp_path / "s" / "trainB" / "synth_0_00001.png").unlink()
    with pytest.raises(InputError, match="only one of trainA/ and trainB/"):
        Pix2PixDataset(tmp_path / "s", "train", (32, 48), "AtoB")


def test_short_run_lowers_l1_and_exports(tmp_path, capsys):
    assert main(["synth", "--pix2pix", "-o", str(tmp_path / "data"), "-n", "6",
                 "--size", "128x128"]) == 0  # fmt: skip
    cfg = Pix2PixTrainConfig.from_json(
        {
            "model": {"family": "pix2pix", "netG": "unet_128", "ngf": 8, "use_dropout": True},
            "data": str(tmp_path / "data"),
            "size": [128, 128],
            "max_iters": 40,
            "device": "cpu",
            "output": str(tmp_path / "run"),
        }
    )
    history = Pix2PixTrainer(cfg).run()
    l1 = [row["G_L1"] for row in history]
    assert len(l1) == 40
    assert np.mean(l1[-6:]) < 0.85 * np.mean(l1[:6])  # seeds 0-2 measured 0.68-0.72
    out = tmp_path / "model"
    assert main(["export", "--checkpoint", str(tmp_path / "run" / "latest.pt"), "--no-fp16",
                 "-o", str(out)]) == 0  # fmt: skip
    with Renderer(out, backend="onnxruntime", precision="fp32") as renderer:
        assert renderer.manifest.architecture["netG"] == "unet_128"
        assert renderer.render_images(np.zeros((128, 128, 3), np.uint8)).shape == (1, 128, 128, 3)


def test_bad_training_configs_say_why(tmp_path):
    with pytest.raises(ConfigError, match="multiples of 256"):
        Pix2PixTrainConfig(size=[128, 128])
    with pytest.raises(ConfigError, match="gan_mode"):
        Pix2PixTrainConfig(gan_mode="wgan")
    with pytest.raises(InputError, match="expected train/"):
        Pix2PixTrainer(Pix2PixTrainConfig(data=str(tmp_path), device="cpu"))


def test_shipped_config_is_the_original_recipe():
    from pathlib import Path

    from p2phd.train.config_file import read_config_dict

    path = Path(__file__).parents[2] / "configs" / "pix2pix.yaml"
    cfg = Pix2PixTrainConfig.from_json(read_config_dict(path))
    assert (cfg.model.netG, cfg.model.norm, cfg.model.use_dropout) == ("unet_256", "batch", True)
    assert (cfg.lambda_L1, cfg.lr, cfg.beta1, cfg.n_layers_D) == (100.0, 2e-4, 0.5, 3)
