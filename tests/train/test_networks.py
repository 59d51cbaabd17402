"""The networks keep the original pix2pixHD parameter layout (so its checkpoints load unmapped)
and compute what the paper's architecture computes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from p2phd.common.errors import ConfigError
from p2phd.train.instance_pooling import instance_average
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_discriminator, build_encoder, build_generator


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def conv(prefix: str, out_ch: int, in_ch: int, k: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (out_ch, in_ch, k, k), f"{prefix}.bias": (out_ch,)}


def published_global(in_nc: int, ngf: int, n_down: int, n_blocks: int, tail: bool = True):
    """Key -> shape of the original GlobalGenerator, from its Sequential's layer arithmetic:
    [pad, conv7, norm, relu] + n_down*[conv, norm, relu] + n_blocks*[block]
    + n_down*[convT, norm, relu] + [pad, conv7, tanh]."""
    keys = conv("model.1", ngf, in_nc, 7)
    i = 4
    for d in range(n_down):
        keys |= conv(f"model.{i}", ngf * 2 ** (d + 1), ngf * 2**d, 3)
        i += 3
    dim = ngf * 2**n_down
    for _ in range(n_blocks):
        keys |= conv(f"model.{i}.conv_block.1", dim, dim, 3)
        keys |= conv(f"model.{i}.conv_block.5", dim, dim, 3)
        i += 1
    for u in range(n_down):
        mult = 2 ** (n_down - u)
        # ConvTranspose2d weights are [in, out, k, k]
        keys |= {f"model.{i}.weight": (ngf * mult, ngf * mult // 2, 3, 3)}
        keys |= {f"model.{i}.bias": (ngf * mult // 2,)}
        i += 3
    if tail:
        keys |= conv(f"model.{i + 1}", 3, ngf, 7)
    return keys


def meta(cfg: ModelConfig, build=build_generator) -> torch.nn.Module:
    with torch.device("meta"):
        return build(cfg)


def test_512p_global_generator_has_keys_model_1_to_38():
    g = meta(ModelConfig(label_nc=35, instance=True, ngf=64))
    got = shapes(g)
    assert got == published_global(36, 64, 4, 9)
    numbers = sorted({int(k.split(".")[1]) for k in got})
    assert numbers[0] == 1 and numbers[-1] == 38
    assert got["model.1.weight"] == (64, 36, 7, 7)
    assert got["model.16.conv_block.5.weight"] == (1024, 1024, 3, 3)
    assert got["model.38.weight"] == (3, 64, 7, 7)


@pytest.mark.parametrize(
    ("label_nc", "instance", "feat_num", "ngf", "n_down", "n_blocks"),
    [(35, True, 3, 64, 4, 9), (10, False, 0, 32, 3, 6), (4, True, 0, 8, 2, 1)],
)
def test_global_layout_at_several_sizes(label_nc, instance, feat_num, ngf, n_down, n_blocks):
    cfg = ModelConfig(
        label_nc=label_nc,
        instance=instance,
        feat_num=feat_num,
        ngf=ngf,
        n_downsample_global=n_down,
        n_blocks_global=n_blocks,
    )
    assert shapes(meta(cfg)) == published_global(cfg.input_nc, ngf, n_down, n_blocks)


@pytest.mark.parametrize(("ngf", "n_blocks_local"), [(32, 3), (8, 1)])
def test_local_enhancer_layout(ngf, n_blocks_local):
    """1024p config: the global part is G1 at 2*ngf without its last three layers."""
    cfg = ModelConfig(netG="local", ngf=ngf, n_blocks_local=n_blocks_local)
    got = shapes(meta(cfg))
    expected = published_global(36, 2 * ngf, 4, 9, tail=False)
    expected |= conv("model1_1.1", ngf, 36, 7) | conv("model1_1.4", 2 * ngf, ngf, 3)
    for b in range(n_blocks_local):
        expected |= conv(f"model1_2.{b}.conv_block.1", 2 * ngf, 2 * ngf, 3)
        expected |= conv(f"model1_2.{b}.conv_block.5", 2 * ngf, 2 * ngf, 3)
    expected |= {f"model1_2.{n_blocks_local}.weight": (2 * ngf, ngf, 3, 3)}
    expected |= {f"model1_2.{n_blocks_local}.bias": (ngf,)}
    expected |= conv(f"model1_2.{n_blocks_local + 4}", 3, ngf, 7)
    assert got == expected
    assert max(int(k.split(".")[1]) for k in got if k.startswith("model.")) == 34


def test_encoder_layout():
    got = shapes(meta(ModelConfig(feat_num=3), build_encoder))
    convs = sorted({int(k.split(".")[1]) for k in got})
    assert convs == [1, 4, 7, 10, 13, 16, 19, 22, 25, 29]
    assert got["model.1.weight"] == (16, 3, 7, 7)
    assert got["model.13.weight"] == (256, 128, 3, 3)
    assert got["model.16.weight"] == (256, 128, 3, 3)  # first ConvTranspose2d [in, out, k, k]
    assert got["model.29.weight"] == (3, 16, 7, 7)


def test_multiscale_discriminator_layout_and_outputs():
    cfg = ModelConfig(label_nc=5, instance=True, feat_num=2)
    d = build_discriminator(cfg, num_D=2, n_layers=3, ndf=8)
    got = shapes(d)
    in_nc = 5 + 1 + 3  # one-hot + edges + RGB image: the original conditions D on the label input
    assert got["scale0_layer0.0.weight"] == (8, in_nc, 4, 4)
    assert got["scale1_layer3.0.weight"] == (64, 32, 4, 4)
    assert got["scale1_layer4.0.weight"] == (1, 64, 4, 4)
    assert not any(k.startswith("scale2") for k in got)
    outs = d(torch.randn(1, in_nc, 64, 64))
    assert len(outs) == 2 and all(len(o) == 5 for o in outs)
    assert outs[0][-1].shape[1] == 1
    assert outs[1][0].shape[-1] < outs[0][0].shape[-1]  # second scale sees a downsampled input


@pytest.mark.parametrize("netG", ["global", "local"])
def test_generator_output_is_an_image_of_the_input_size(netG):
    cfg = ModelConfig(
        label_nc=4, ngf=4, netG=netG, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1
    )
    g = build_generator(cfg).eval()
    for h, w in [(2 * cfg.size_multiple, 2 * cfg.size_multiple), (32, 48)]:
        with torch.no_grad():
            y = g(torch.randn(2, cfg.input_nc, h, w))
        assert y.shape == (2, 3, h, w)
        assert y.abs().max() <= 1.0


def test_tail_skip_lets_a_scene_wide_feature_shift_reach_the_output():
    """The InstanceNorm after G's first layer removes a shift of every feature by the same
    amount (a whole scene's colours); with tail_skip the last convolution still sees it."""
    x = torch.randn(1, 5 + 1 + 3, 32, 32)
    shifted = x.clone()
    shifted[:, -3:] += 0.3
    change = {}
    for skip in (False, True):
        cfg = ModelConfig(label_nc=5, feat_num=3, ngf=4, n_downsample_global=2, n_blocks_global=1,
                          tail_skip=skip)  # fmt: skip
        torch.manual_seed(0)
        g = build_generator(cfg).eval()
        with torch.no_grad():
            change[skip] = (g(shifted) - g(x)).abs().mean().item()
    assert change[False] < 1e-4 < 1e-2 < change[True]


def test_tail_skip_keeps_parameter_names_and_widens_the_last_convolutions():
    plain = ModelConfig(feat_num=3, ngf=8, n_downsample_global=2, n_blocks_global=1, nef=4)
    skip = replace(plain, tail_skip=True)
    a, b = shapes(meta(plain)), shapes(meta(skip))
    assert a.keys() == b.keys()
    (last,) = [k for k in a if a[k] != b[k] and k.endswith("weight")]
    assert b[last][1] == a[last][1] + 3  # the 3 feature channels
    e_plain, e_skip = shapes(meta(plain, build_encoder)), shapes(meta(skip, build_encoder))
    (last,) = [k for k in e_plain if e_plain[k] != e_skip[k] and k.endswith("weight")]
    assert e_skip[last][1] == e_plain[last][1] + 3  # the photo's RGB


@pytest.mark.parametrize("change", [{"feat_num": 0}, {"netG": "local"}])
def test_tail_skip_needs_features_and_the_global_generator(change):
    with pytest.raises(ConfigError, match="tail_skip needs feat_num >= 1 and netG 'global'"):
        ModelConfig(**{"feat_num": 3, "tail_skip": True, **change})


def test_encoder_gives_one_feature_vector_per_instance():
    cfg = ModelConfig(feat_num=3, nef=4, n_downsample_E=2)
    enc = build_encoder(cfg).eval()
    inst = torch.zeros(2, 1, 16, 24, dtype=torch.int32)
    inst[:, :, :, 12:] = 26001
    inst[1, :, :8, :] = 7
    with torch.no_grad():
        pooled = enc(torch.rand(2, 3, 16, 24) * 2 - 1, inst)
    for b in range(2):
        for i in inst[b].unique():
            region = pooled[b][:, inst[b, 0] == i]
            assert torch.allclose(region, region[:, :1].expand_as(region))


def test_instance_average_matches_a_per_instance_loop():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 4, 9, 11, generator=g)
    ids = torch.randint(0, 5, (2, 1, 9, 11), generator=g) * 1000 + 26000
    got = instance_average(feats, ids)
    for b in range(2):
        for i in ids[b].unique():
            mask = ids[b, 0] == i
            want = feats[b][:, mask].mean(dim=1, keepdim=True)
            assert torch.allclose(got[b][:, mask], want.expand(-1, int(mask.sum())), atol=1e-6)


def test_instance_average_of_bf16_features_is_the_mean_of_large_regions():
    """Under bf16 autocast the encoder's features are bf16: the pooled mean of a 128x256 region
    (sky, road) must still be its mean, not a sum over a count that stopped at 256."""
    g = torch.Generator().manual_seed(4)
    feats = (torch.rand(1, 3, 128, 256, generator=g) * 0.5 + 0.25).bfloat16()
    ids = torch.zeros(1, 1, 128, 256, dtype=torch.int64)
    ids[..., :, 200:] = 26000  # a second, smaller instance
    got = instance_average(feats, ids)
    assert got.dtype == torch.bfloat16
    for i in (0, 26000):
        mask = ids[0, 0] == i
        want = feats[0].float()[:, mask].mean(dim=1)
        assert torch.allclose(got[0].float()[:, mask][:, 0], want, atol=4e-3), (i, want)
