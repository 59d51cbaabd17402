"""The first convolution computed from the labels (`kernels.one_hot_labels`, `one_hot_conv`)
against the reflection-padded convolution over the dense input (`reference.reflect_conv`), on
blocky maps (whose uniform windows take the row-sum path) and noisy ones, with and without dense
channels (a binary first one takes the window-pattern path); and with the instance normalisation
and uint8 levels an int8 layer reads after it (`one_hot_conv_levels`, `reference.norm_levels`)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from p2phd.common.errors import InputError
from p2phd.engine import kernels
from p2phd.engine.kernels import (
    Levels,
    OneHotConv,
    one_hot_conv,
    one_hot_conv_levels,
    one_hot_labels,
    reference,
)


@st.composite
def conv_cases(draw):
    """(x, weight, bias, label_nc): one-hot labels from blocks of 1-9 pixels, then 0-4 dense
    channels (a 0/1 edge-like channel or a continuous one, then per-block constant features);
    kernels up to 9 (past 7, the binary channel takes the per-tap path)."""
    k = draw(st.sampled_from([1, 3, 5, 7, 9]))
    b = draw(st.integers(1, 2))
    h, w = draw(st.integers(k // 2 + 1, 24)), draw(st.integers(k // 2 + 1, 70))
    label_nc, dense = draw(st.integers(1, 40)), draw(st.integers(0, 4))
    co = draw(st.sampled_from([1, 4, 16, 20, 64, 80]))
    block = draw(st.sampled_from([1, 3, 9]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    def blocky(shape):
        coarse = rng.random((*shape[:-2], h // block + 1, w // block + 1))
        return coarse.repeat(block, -2).repeat(block, -1)[..., :h, :w]

    labels = (blocky((b, h, w)) * label_nc).astype(np.int64)
    x = np.zeros((b, label_nc + dense, h, w), np.float32)
    np.put_along_axis(x, labels[:, None], 1.0, axis=1)
    if dense:
        edges = rng.random((b, h, w)) < 0.1
        x[:, label_nc] = edges if draw(st.booleans()) else edges * rng.normal(0, 1, (b, h, w))
        x[:, label_nc + 1 :] = blocky((b, dense - 1, h, w)) * 2 - 1
    weight = rng.normal(0, 1, (co, label_nc + dense, k, k)).astype(np.float32)
    return x, weight, rng.normal(0, 1, co).astype(np.float32), label_nc


@settings(max_examples=150, deadline=None)
@given(conv_cases())
def test_the_lookup_is_the_reflection_padded_convolution(case):
    x, weight, bias, label_nc = case
    labels = one_hot_labels(x, label_nc)
    np.testing.assert_array_equal(labels, x[:, :label_nc].argmax(1))
    out = one_hot_conv(x, labels, OneHotConv.from_weights(weight, bias, label_nc))
    expected = reference.reflect_conv(x, weight, bias)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)


def random_levels(co: int, seed: int, step: float = 3 / 255) -> Levels:
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 2, co).astype(np.float32)
    return Levels(1e-5, scale, rng.normal(0, 0.5, co).astype(np.float32), step)


@settings(max_examples=100, deadline=None)
@given(conv_cases(), st.integers(0, 2**32 - 1))
def test_the_levels_are_the_normalised_convolution_quantised(case, seed):
    """The float64 reference's levels, channels last, but a level apart where its value lies
    on a rounding boundary within the float32 sums' error (~1e-6 of the largest output, times
    what the normalisation and the step scale it by: much in a near-constant image)."""
    x, weight, bias, label_nc = case
    levels = random_levels(weight.shape[0], seed)
    conv = OneHotConv.from_weights(weight, bias, label_nc)
    out = one_hot_conv_levels(x, one_hot_labels(x, label_nc), conv, levels).astype(int)
    y, norm = reference.reflect_conv(x, weight, bias), (levels.eps, levels.scale, levels.shift)
    steps = reference.norm_steps(y, *norm, levels.step)
    expected = reference.norm_levels(y, *norm, levels.step)
    assert out.shape == expected.shape == (x.shape[0], *x.shape[2:], weight.shape[0])
    assert np.abs(out - expected).max() <= 1
    y = y.astype(np.float64)
    gain = levels.scale / np.sqrt(y.var(axis=(2, 3)) + levels.eps) / levels.step  # [B, Co]
    error = 0.02 + 1e-6 * np.abs(y).max(axis=(2, 3)) * gain
    apart = out != expected
    assert np.all((np.abs(steps % 1 - 0.5) < error[:, None, None, :])[apart])


def test_levels_reach_both_ends_and_fill_a_reused_buffer():
    x, weight, bias, label_nc = one_case(seed=6)
    conv = OneHotConv.from_weights(weight, bias, label_nc)
    levels = random_levels(20, seed=6, step=1 / 255)  # shifts and 3-sigma values past 255
    out = np.full((2, *x.shape[2:], 20), 7, np.uint8)
    assert one_hot_conv_levels(x, one_hot_labels(x, label_nc), conv, levels, out) is out
    expected = reference.norm_levels(reference.reflect_conv(x, weight, bias), 1e-5,
                                     levels.scale, levels.shift, levels.step)  # fmt: skip
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert (out == 0).mean() > 0.2 and (out == 255).any()  # the ReLU and the clamp


def test_bad_levels_are_named():
    x, weight, bias, label_nc = one_case(seed=7)
    conv = OneHotConv.from_weights(weight, bias, label_nc)
    labels = one_hot_labels(x, label_nc)
    with pytest.raises(InputError, match="eps and step must be > 0"):
        Levels(1e-5, np.ones(20), np.zeros(20), 0.0)
    with pytest.raises(InputError, match=r"scale and shift must have shape \(20,\)"):
        one_hot_conv_levels(x, labels, conv, Levels(1e-5, np.ones(4), np.zeros(4), 0.1))
    with pytest.raises(InputError, match="out: expected a C-contiguous uint8 array"):
        one_hot_conv_levels(x, labels, conv, random_levels(20, 7), np.empty((2, 20, 19, 45)))


def test_it_writes_every_element_of_a_reused_buffer():
    x, weight, bias, label_nc = one_case(seed=1)
    conv = OneHotConv.from_weights(weight, bias, label_nc)
    out = np.full((2, weight.shape[0], *x.shape[2:]), np.nan, np.float32)
    assert one_hot_conv(x, one_hot_labels(x, label_nc), conv, out) is out
    np.testing.assert_allclose(out, reference.reflect_conv(x, weight, bias), rtol=1e-5, atol=1e-4)


def one_case(seed: int, label_nc: int = 35, dense: int = 1, co: int = 20, hw=(19, 45)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, label_nc, (2, *hw))
    x = np.zeros((2, label_nc + dense, *hw), np.float32)
    np.put_along_axis(x, labels[:, None], 1.0, axis=1)
    x[:, label_nc:] = rng.integers(0, 2, (2, dense, *hw))
    weight = rng.normal(0, 1, (co, label_nc + dense, 7, 7)).astype(np.float32)
    return x, weight, rng.normal(0, 1, co).astype(np.float32), label_nc


@pytest.mark.parametrize(
    "damage",
    [
        lambda x: x.__setitem__((0, 3, 5, 7), 0.5),  # a fractional label value
        lambda x: x.__setitem__((1, slice(0, 35), 2, 2), 0.0),  # no label at a pixel
        lambda x: x.__setitem__((1, slice(0, 2), 4, 4), 1.0),  # two labels at a pixel
        lambda x: x.__setitem__((0, 0, 0, 0), np.nan),
        lambda x: x.__setitem__((0, 0, 18, 44), -1.0),
    ],
)
def test_an_input_that_is_not_one_hot_has_no_labels(damage):
    x, _, _, label_nc = one_case(seed=2)
    assert one_hot_labels(x, label_nc) is not None
    damage(x)
    assert one_hot_labels(x, label_nc) is None


def test_dense_channels_may_hold_any_value():
    x, weight, bias, label_nc = one_case(seed=3, dense=3)
    x[:, label_nc + 1 :] = np.random.default_rng(3).normal(0, 5, x[:, label_nc + 1 :].shape)
    out = one_hot_conv(
        x, one_hot_labels(x, label_nc), OneHotConv.from_weights(weight, bias, label_nc)
    )
    np.testing.assert_allclose(out, reference.reflect_conv(x, weight, bias), rtol=1e-5, atol=1e-3)


def test_bad_weights_and_inputs_are_named():
    x, weight, bias, label_nc = one_case(seed=4)
    conv = OneHotConv.from_weights(weight, bias, label_nc)
    labels = one_hot_labels(x, label_nc)
    with pytest.raises(InputError, match="odd size"):
        OneHotConv.from_weights(np.zeros((4, 36, 4, 4), np.float32), np.zeros(4), 35)
    with pytest.raises(InputError, match="label_nc"):
        OneHotConv.from_weights(weight, bias, 37)
    with pytest.raises(InputError, match="bias"):
        OneHotConv.from_weights(weight, bias[:3], label_nc)
    with pytest.raises(InputError, match="36 channels; the convolution reads"):
        one_hot_conv(x, labels, OneHotConv.from_weights(weight[:, :-1], bias, label_nc))
    with pytest.raises(InputError, match="too small"):
        one_hot_conv(x[:, :, :3, :3], labels[:, :3, :3], conv)
    with pytest.raises(InputError, match="out"):
        one_hot_conv(x, labels, conv, np.empty((2, 20, 19, 44), np.float32))
    read_only = np.empty((2, 20, 19, 45), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(InputError, match="read-only"):
        one_hot_conv(x, labels, conv, read_only)
    with pytest.raises(InputError, match="labels: shape"):
        one_hot_conv(x, labels[:1], conv)
    with pytest.raises(InputError, match="labels: 35 is >= label_nc=35"):
        one_hot_conv(x, np.full_like(labels, 35), conv)
    with pytest.raises(InputError, match="label_nc"):
        one_hot_labels(x, 37)


def test_real_cityscapes_frame(cityscapes_sample):
    """A real 2048x1024 frame with its instance boundaries, a 7x7 convolution to 64 channels."""
    name = sorted((cityscapes_sample / "test_inst").glob("*.png"))[0]
    instances = np.asarray(Image.open(name))[None]
    label_name = name.name.replace("instanceIds", "labelIds")
    labels = np.asarray(Image.open(cityscapes_sample / "test_label" / label_name))[None]
    x = kernels.assemble_input(labels, kernels.compact_instances(instances, labels), 35, True, None)
    rng = np.random.default_rng(5)
    weight = rng.normal(0, 1, (64, 36, 7, 7)).astype(np.float32)
    bias = rng.normal(0, 1, 64).astype(np.float32)
    np.testing.assert_array_equal(one_hot_labels(x, 35), labels)
    out = one_hot_conv(x, labels, OneHotConv.from_weights(weight, bias, 35))
    rows = slice(500, 540)  # the reference over a band (and its 3 reflected rows: none here)
    band = reference.reflect_conv(x[:, :, 497:543], weight, bias)[:, :, 3:-3]
    np.testing.assert_allclose(out[:, :, rows], band, rtol=1e-5, atol=1e-3)
    # Its levels: the moments over all 2M pixels, against those of the float32 output.
    levels = random_levels(64, seed=5)
    expected = reference.norm_levels(out, levels.eps, levels.scale, levels.shift, levels.step)
    diff = np.abs(one_hot_conv_levels(x, labels, OneHotConv.from_weights(weight, bias, 35),
                                      levels).astype(int) - expected)  # fmt: skip
    assert diff.max() <= 1 and diff.mean() < 1e-3
