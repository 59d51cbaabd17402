"""Losses: LSGAN targets, the original feature-matching weights, VGG19 from a local file only."""

import pytest
import torch

from p2phd.common.errors import ConfigError
from p2phd.train.losses import (
    VGG19Features,
    VGGLoss,
    feature_matching_loss,
    load_vgg19,
    lsgan_loss,
)


def fake_d_output(value: float, num_d: int = 2, n_layers: int = 3):
    return [[torch.full((1, 2, 4, 4), value) for _ in range(n_layers + 2)] for _ in range(num_d)]


def test_lsgan_is_zero_at_its_target_and_sums_scales():
    assert float(lsgan_loss(fake_d_output(1.0), True)) == 0.0
    assert float(lsgan_loss(fake_d_output(0.0), False)) == 0.0
    assert float(lsgan_loss(fake_d_output(0.5), True)) == pytest.approx(2 * 0.25)


def test_feature_matching_uses_the_original_weights():
    # 2 scales x 4 intermediate stages, each |1-0| = 1: 10 * (1/2) * (4/4) * 8 = 40
    loss = feature_matching_loss(fake_d_output(1.0), fake_d_output(0.0), weight=10.0)
    assert float(loss) == pytest.approx(40.0)
    same = feature_matching_loss(fake_d_output(0.3), fake_d_output(0.3))
    assert float(same) == 0.0


def test_feature_matching_does_not_push_gradients_into_the_real_branch():
    real = [[t.requires_grad_() for t in scale] for scale in fake_d_output(0.0)]
    fake = [[t.requires_grad_() for t in scale] for scale in fake_d_output(1.0)]
    feature_matching_loss(fake, real).backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None


def test_vgg19_loads_a_torchvision_state_dict(tmp_path):
    net = VGG19Features()
    # a torchvision vgg19 file also holds the classifier and the layers past relu5_1
    state = {f"features.{k.split('.', 1)[1]}": v for k, v in net.state_dict().items()}
    state["features.34.weight"] = torch.zeros(512, 512, 3, 3)
    state["classifier.0.weight"] = torch.zeros(4096, 25088)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loaded = load_vgg19(path)
    assert torch.equal(loaded.features[28].weight, net.features[28].weight)
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    loss = VGGLoss(loaded)
    assert float(loss(x, x)) == 0.0 and float(loss(x, -x)) > 0.0


def test_vgg_needs_a_local_file_and_never_downloads(tmp_path):
    with pytest.raises(ConfigError, match="local torchvision vgg19"):
        load_vgg19(None)
    with pytest.raises(ConfigError, match="not found"):
        load_vgg19(tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match=r"features.0.weight.*shape"):
        load_vgg19(tmp_path / "bad.pth")
