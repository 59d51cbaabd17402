"""Size policies: sizes the generator cannot take are padded, resized or rejected, and the output
always comes back at the input's size."""

import numpy as np
import pytest

from p2phd.common.errors import ConfigError, InputError
from p2phd.engine.core.size_policy import SizePolicy, fit


@pytest.fixture
def odd_maps():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 35, (2, 30, 45), dtype=np.uint8)
    return labels, labels.astype(np.int32) * 1000


def test_pad_reflects_and_crops_back(odd_maps):
    labels, instances = odd_maps
    f = fit(labels, instances, 16, SizePolicy.PAD)
    assert f.labels.shape == (2, 32, 48) and f.instances.shape == (2, 32, 48)
    assert np.array_equal(f.labels[:, :30, :45], labels)  # content untouched
    assert np.array_equal(f.labels[:, 30, :45], labels[:, 28])  # reflected, not zero-filled
    out = np.zeros((2, 32, 48, 3), np.uint8)
    assert f.restore(out).shape == (2, 30, 45, 3)


def test_resize_keeps_ids_exact_and_restores_size(odd_maps):
    labels, instances = odd_maps
    f = fit(labels, instances + 70000, 16, SizePolicy.RESIZE)
    assert f.labels.shape[1] % 16 == 0 and f.labels.shape[2] % 16 == 0
    assert set(np.unique(f.labels)) <= set(np.unique(labels))  # nearest: no new ids
    assert set(np.unique(f.instances)) <= set(np.unique(instances + 70000))
    out = np.zeros((2, *f.labels.shape[1:], 3), np.uint8)
    assert f.restore(out).shape == (2, 30, 45, 3)


def test_reject_names_the_size_and_multiple(odd_maps):
    with pytest.raises(InputError, match="30x45.*multiple of 16"):
        fit(*odd_maps, 16, SizePolicy.REJECT)
    with pytest.raises(ConfigError, match="crop"):
        SizePolicy.parse("crop")


def test_a_fitting_size_passes_through_unchanged(odd_maps):
    labels = odd_maps[0][:, :16, :32]
    f = fit(labels, None, 16, SizePolicy.REJECT)
    assert f.labels is labels and f.instances is None
