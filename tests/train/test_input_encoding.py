"""The torch reference input path: one-hot, exact integer instance edges, sampled features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from p2phd.common.errors import InputError
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.input_encoding import edges, encode_input, one_hot, sample_features


@pytest.mark.parametrize(("a", "b"), [(26001, 26002), (33000, 33001), (2048, 2049)])
def test_edges_between_touching_ids_above_2048(a, b):
    """Ids that fp16 (the original's half-precision path) cannot tell apart must still get an
    edge on both sides of their boundary, and nowhere else."""
    assert torch.tensor([a, b]).half().unique().numel() == 1  # the trap this guards against
    inst = torch.full((1, 1, 6, 8), a, dtype=torch.int32)
    inst[..., :, 4:] = b
    e = edges(inst)[0, 0]
    assert e[:, 3].eq(1).all() and e[:, 4].eq(1).all()
    assert e[:, :3].eq(0).all() and e[:, 5:].eq(0).all()


def test_edges_follow_the_4_neighbour_rule_on_random_maps():
    g = torch.Generator().manual_seed(0)
    inst = torch.randint(0, 3, (2, 1, 7, 9), generator=g) + 30000
    got = edges(inst).numpy()
    t = inst.numpy()
    b, _, h, w = t.shape
    for n in range(b):
        for y in range(h):
            for x in range(w):
                nbrs = [(y + dy, x + dx) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
                differs = any(
                    0 <= yy < h and 0 <= xx < w and t[n, 0, yy, xx] != t[n, 0, y, x]
                    for yy, xx in nbrs
                )
                assert got[n, 0, y, x] == float(differs)


def test_float_instance_maps_are_refused():
    with pytest.raises(InputError, match="integer ids"):
        edges(torch.zeros(1, 1, 4, 4, dtype=torch.float16))


def test_one_hot_and_out_of_range_label_names_the_value():
    label = torch.tensor([[[[0, 2], [1, 2]]]])
    oh = one_hot(label, 3)
    assert oh.shape == (1, 3, 2, 2)
    assert torch.equal(oh.argmax(1, keepdim=True), label) and oh.sum(1).eq(1).all()
    with pytest.raises(InputError, match="class id 7"):
        one_hot(torch.tensor([[[[0, 7]]]]), 3)


def test_sampled_features_are_a_cluster_centre_per_instance():
    clusters = {26: np.array([[0.1, 0.2], [0.3, 0.4]], np.float32), 7: np.array([[0.9, -0.9]])}
    inst = torch.full((1, 1, 4, 6), 7, dtype=torch.int32)  # stuff class 7 (id = class)
    inst[..., :2, :3] = 26001
    inst[..., 2:, 3:] = 26002
    inst[..., 3, 0] = 11  # a class without clusters gets zeros
    feats = sample_features(inst, clusters, 2, torch.Generator().manual_seed(1))
    assert feats.shape == (1, 2, 4, 6)
    for i in (26001, 26002):
        v = feats[0][:, inst[0, 0] == i]
        assert (v == v[:, :1]).all()
        assert any(np.allclose(v[:, 0].numpy(), c) for c in clusters[26])
    assert torch.allclose(feats[0][:, inst[0, 0] == 7], torch.tensor([[0.9], [-0.9]]))
    assert feats[0, :, 3, 0].eq(0).all()


def test_encode_input_concatenates_in_the_package_channel_order():
    cfg = ModelConfig(label_nc=4, instance=True, feat_num=2)
    label = torch.randint(0, 4, (2, 1, 8, 8))
    inst = torch.randint(0, 3, (2, 1, 8, 8))
    feats = torch.rand(2, 2, 8, 8)
    x = encode_input(cfg, label, inst, feats)
    assert x.shape == (2, cfg.input_nc, 8, 8)
    assert torch.equal(x[:, :4], one_hot(label, 4))
    assert torch.equal(x[:, 4:5], edges(inst))
    assert torch.equal(x[:, 5:], feats)
    with pytest.raises(InputError, match="feature map"):
        encode_input(cfg, label, inst, None)
