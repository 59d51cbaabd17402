"""The training dataset: sizes rounded to the generator's multiple, ids kept exact, clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from p2phd.common.errors import InputError
from p2phd.train.pix2pixhd.data import PairedDataset, collate, resize_nearest, round_to_multiple


def test_sizes_round_to_the_generator_multiple():
    assert round_to_multiple((33, 70), 8) == (32, 72)
    assert round_to_multiple((3, 100), 16) == (16, 96)


def test_samples_resize_with_exact_ids_and_photos_in_range(synth_data):
    ds = PairedDataset(synth_data, 16, (40, 90), label_nc=35)
    sample = ds[0]
    assert sample["label"].shape == (1, 48, 96) and sample["label"].dtype == torch.int64
    assert sample["instance"].shape == (1, 48, 96) and sample["instance"].dtype == torch.int64
    assert sample["image"].shape == (3, 48, 96) and sample["image"].dtype == torch.float32
    assert float(sample["image"].min()) >= -1.0 and float(sample["image"].max()) <= 1.0
    raw_inst = np.asarray(Image.open(ds.pairs[0].instance)).astype(np.int64)
    # nearest resizing never invents ids (bilinear would blend 26001 and 26002 into 26001.5)
    assert set(sample["instance"].unique().tolist()) <= set(np.unique(raw_inst).tolist())


def test_native_size_is_kept_when_no_size_given(synth_data):
    sample = PairedDataset(synth_data, 8)[1]
    assert sample["label"].shape == (1, 32, 64)


def test_flip_mirrors_every_map_together(synth_data):
    ds = PairedDataset(synth_data, 8)
    plain, flipped = ds.load(2), ds.load(2, flip=True)
    for name in ("label", "instance", "image"):
        assert torch.equal(plain[name].flip(-1), flipped[name])


def test_collate_stacks_a_batch(synth_data):
    ds = PairedDataset(synth_data, 8)
    batch = collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 32, 64) and len(batch["key"]) == 2


def test_nearest_resize_samples_pixel_centres():
    ids = np.arange(4).reshape(1, 4)
    assert resize_nearest(ids, (1, 2)).tolist() == [[1, 3]]
    assert resize_nearest(ids, (2, 8)).tolist() == [[0, 0, 1, 1, 2, 2, 3, 3]] * 2


def test_undecodable_file_is_named(synth_data, tmp_path):
    for d in ("label", "inst", "img"):
        (tmp_path / f"train_{d}").mkdir()
        src = next((synth_data / f"train_{d}").glob("*.png"))
        (tmp_path / f"train_{d}" / "x.png").write_bytes(src.read_bytes())
    broken = tmp_path / "train_img" / "x.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InputError, match=str(broken)):
        PairedDataset(tmp_path, 8)[0]


def test_label_beyond_label_nc_names_the_file_and_value(synth_data):
    ds = PairedDataset(synth_data, 8, label_nc=20)  # scenes hold ids up to 26
    with pytest.raises(InputError, match=r"label value 2\d .*label_nc 20") as err:
        ds[0]
    assert ds.pairs[0].label.name in str(err.value)


def test_real_cityscapes_sample_loads_at_a_training_size(cityscapes_sample):
    ds = PairedDataset(cityscapes_sample, 16, (128, 256), label_nc=35)
    sample = ds[0]
    assert sample["image"].shape == (3, 128, 256)
    ids = sample["instance"].unique()
    assert (ids >= 1000).any() and (ids < 1000).any()  # things and stuff, Cityscapes-style
