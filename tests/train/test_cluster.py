"""p2phd cluster: one k-means table per class from a trained encoder, as a pickle-free npz."""

import numpy as np
import pytest

from p2phd.common.errors import CheckpointError
from p2phd.train.checkpoint import Checkpoint, save_checkpoint
from p2phd.train.cluster import cluster, encode_instance_features
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.networks import build_generator
from p2phd.train.pix2pixhd.trainer import train
from p2phd.train.synth import THING_CLASSES


@pytest.fixture
def checkpoint(tiny_config):
    cfg = tiny_config("max_iters=1")
    train(cfg)
    return f"{cfg.output}/latest.pt"


def test_features_npz_has_k_centres_of_feat_num_per_class(checkpoint, synth_data, tmp_path):
    out = tmp_path / "features.npz"
    feats = encode_instance_features(checkpoint, synth_data, min_area=0.0)
    centres = cluster(checkpoint, synth_data, k=3, out=out, min_area=0.0)
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(f"class_{c}" for c in centres)
        for cls, table in feats.items():
            arr = npz[f"class_{cls}"]
            assert arr.dtype == np.float32 and arr.shape == (min(3, len(table)), 2)
    # every scene has cars, several per scene: one row per car instance, clustered to 3
    assert len(feats[26]) >= 6 and centres[26].shape == (3, 2)
    assert set(THING_CLASSES) <= set(centres)


def test_tiny_instances_are_skipped(checkpoint, synth_data):
    everything = encode_instance_features(checkpoint, synth_data, min_area=0.0)
    large_only = encode_instance_features(checkpoint, synth_data, min_area=1 / 64)
    assert sum(map(len, large_only.values())) < sum(map(len, everything.values()))


def test_a_model_without_encoder_cannot_be_clustered(tiny_config, synth_data, tmp_path):
    cfg = tiny_config("max_iters=1", "model.feat_num=0")
    train(cfg)
    with pytest.raises(CheckpointError, match="no feature encoder"):
        cluster(f"{cfg.output}/latest.pt", synth_data, out=tmp_path / "f.npz")


def test_a_pix2pix_checkpoint_cannot_be_clustered(synth_data, tmp_path):
    cfg = Pix2PixConfig(netG="resnet_6blocks", ngf=4)
    path = tmp_path / "pix2pix.pt"
    save_checkpoint(path, Checkpoint(cfg, build_generator(cfg).state_dict()))
    with pytest.raises(CheckpointError, match="no feature encoder"):
        cluster(path, synth_data, out=tmp_path / "f.npz")
