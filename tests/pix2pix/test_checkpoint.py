"""Original pix2pix/CycleGAN generator files load unchanged (DataParallel prefix, old
InstanceNorm statistics, pre-0.4.1 BatchNorm files), and a wrong option is named."""

from __future__ import annotations

import pytest
import torch

from p2phd.common.errors import CheckpointError
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.original_checkpoint import load_pix2pix

from .conftest import original_generator, save_original


def test_batchnorm_checkpoint_with_module_prefix_loads_every_tensor(tmp_path):
    cfg = Pix2PixConfig(netG="unet_128", norm="batch", ngf=4)
    net = original_generator(cfg)
    ckpt = load_pix2pix(cfg, save_original(net, tmp_path / "g.pth", prefix="module."))
    for key, value in net.state_dict().items():
        assert torch.equal(ckpt.generator_state[key], value), key


def test_old_files_load(tmp_path):
    # CycleGAN files from PyTorch < 0.4 carry running statistics for affine-free InstanceNorm.
    cfg = Pix2PixConfig(netG="resnet_6blocks", norm="instance", ngf=4)
    state = original_generator(cfg).state_dict()
    state["model.2.running_mean"] = torch.zeros(4)
    state["model.2.running_var"] = torch.ones(4)
    torch.save(state, tmp_path / "old_instance.pth")
    assert set(load_pix2pix(cfg, tmp_path / "old_instance.pth").generator_state) == set(
        original_generator(cfg).state_dict()
    )
    # BatchNorm files from PyTorch < 0.4.1 have no num_batches_tracked.
    cfg = Pix2PixConfig(netG="unet_128", norm="batch", ngf=4)
    state = {
        k: v for k, v in original_generator(cfg).state_dict().items() if "num_batches" not in k
    }
    torch.save(state, tmp_path / "old_batch.pth")
    loaded = load_pix2pix(cfg, tmp_path / "old_batch.pth").generator_state
    assert loaded["model.model.1.model.2.num_batches_tracked"] == 0


def test_resnet_dropout_layout_is_read_from_the_file(tmp_path):
    trained = Pix2PixConfig(netG="resnet_6blocks", norm="batch", ngf=4, use_dropout=True)
    path = save_original(original_generator(trained), tmp_path / "g.pth")
    ckpt = load_pix2pix(Pix2PixConfig(netG="resnet_6blocks", norm="batch", ngf=4), path)
    assert ckpt.model_config.use_dropout
    assert "model.10.conv_block.6.weight" in ckpt.generator_state


@pytest.mark.parametrize(
    ("asked", "names"),
    [
        ({"netG": "unet_256"}, ["U-Net with 7 levels (unet_128)", "unet_256"]),
        ({"netG": "resnet_9blocks"}, ["U-Net", "resnet_9blocks"]),
        ({"norm": "instance"}, ["norm batch", "norm instance"]),
        ({"ngf": 8}, ["ngf 4", "--ngf"]),
        ({"input_nc": 1}, ["--input-nc 3"]),
    ],
)
def test_wrong_options_are_named(tmp_path, asked, names):
    trained = Pix2PixConfig(netG="unet_128", norm="batch", ngf=4)
    path = save_original(original_generator(trained), tmp_path / "latest_net_G.pth")
    cfg = Pix2PixConfig(**{"netG": "unet_128", "norm": "batch", "ngf": 4, **asked})
    with pytest.raises(CheckpointError) as err:
        load_pix2pix(cfg, path)
    assert "latest_net_G.pth" in str(err.value)
    for name in names:
        assert name in str(err.value)


def test_not_a_weights_file(tmp_path):
    (tmp_path / "g.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch weights file"):
        load_pix2pix(Pix2PixConfig(), tmp_path / "g.pth")
