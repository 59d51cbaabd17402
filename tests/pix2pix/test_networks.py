"""The generators have the published layout of pytorch-CycleGAN-and-pix2pix, checked at full
size (ngf 64) on the meta device: the parameter counts its train script prints and key names
and shapes of its checkpoints."""

from __future__ import annotations

import pytest
import torch

from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.networks import NLayerDiscriminator, build_generator


def meta_state(**kw) -> dict[str, torch.Size]:
    with torch.device("meta"):
        net = build_generator(Pix2PixConfig(**kw), "eval")
    return {k: v.shape for k, v in net.state_dict().items()}


def millions(state: dict[str, torch.Size]) -> float:
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return round(sum(s.numel() for k, s in state.items() if not k.endswith(skip)) / 1e6, 3)


@pytest.mark.parametrize(
    ("net_g", "norm", "published"),
    [
        ("unet_256", "batch", 54.414),  # pix2pix default
        ("unet_128", "batch", 41.829),
        ("resnet_9blocks", "instance", 11.378),  # CycleGAN default
        ("resnet_6blocks", "instance", 7.838),
    ],
)
def test_parameter_counts_match_the_published_networks(net_g, norm, published):
    assert millions(meta_state(netG=net_g, norm=norm)) == published


def test_unet_256_keys_nest_like_the_original():
    state = meta_state(netG="unet_256", norm="batch")
    # outermost: downconv (no bias with BatchNorm), submodule, uprelu, upconv (with bias), tanh
    assert state["model.model.0.weight"] == (64, 3, 4, 4)
    assert "model.model.0.bias" not in state
    assert state["model.model.3.weight"] == (128, 3, 4, 4)
    assert state["model.model.3.bias"] == (3,)
    # second level: downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm
    assert state["model.model.1.model.1.weight"] == (128, 64, 4, 4)
    assert state["model.model.1.model.2.running_var"] == (128,)
    assert state["model.model.1.model.5.weight"] == (256, 64, 4, 4)
    # innermost (8th level): downrelu, downconv, uprelu, upconv, upnorm
    inner = "model.model" + ".1.model" + ".3.model" * 6
    assert state[f"{inner}.1.weight"] == (512, 512, 4, 4)
    assert state[f"{inner}.3.weight"] == (512, 512, 4, 4)
    assert state[f"{inner}.4.weight"] == (512,)
    assert not any(k.startswith(inner + ".3.model") for k in state)


def test_resnet_keys_and_the_dropout_shift():
    plain = meta_state(netG="resnet_9blocks", norm="instance")
    assert plain["model.1.weight"] == (64, 3, 7, 7) and plain["model.1.bias"] == (64,)
    assert plain["model.4.weight"] == (128, 64, 3, 3)
    assert plain["model.10.conv_block.1.weight"] == (256, 256, 3, 3)
    assert plain["model.18.conv_block.5.weight"] == (256, 256, 3, 3)
    assert plain["model.19.weight"] == (256, 128, 3, 3)  # ConvTranspose: [in, out, k, k]
    assert plain["model.26.weight"] == (3, 64, 7, 7)
    assert not any("running" in k for k in plain)  # affine-free InstanceNorm, no statistics
    dropout = meta_state(netG="resnet_6blocks", norm="batch", use_dropout=True)
    assert dropout["model.10.conv_block.6.weight"] == (256, 256, 3, 3)
    assert dropout["model.10.conv_block.7.running_mean"] == (256,)
    assert "model.10.conv_block.1.bias" not in dropout


def test_patchgan_has_the_published_size():
    with torch.device("meta"):
        d = NLayerDiscriminator(6, 64, 3, "batch")
    assert round(sum(p.numel() for p in d.parameters()) / 1e6, 3) == 2.769
    assert d.state_dict()["model.11.weight"].shape == (1, 512, 4, 4)
