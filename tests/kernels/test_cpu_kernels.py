"""The CPU kernels against the NumPy references, on property-based inputs.

Output buffers are poisoned (NaN / 0xAB and a second pattern) before the kernels run, so a
kernel that skips an element fails.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from p2phd.common.errors import InputError
from p2phd.engine import kernels
from p2phd.engine.kernels import _native, reference

SETTINGS = settings(max_examples=100, deadline=None)
BF16 = np.dtype(ml_dtypes.bfloat16)
NP_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": BF16}


@st.composite
def instance_maps(draw, max_side: int = 19, max_id: int = 65535):
    """(instances int32 [B,H,W], labels uint8) from 1x1 to odd sizes, blocky or noisy.

    Ids come from a small pool that always holds one above 2048, so regions repeat, touch and
    use large ids; a block factor makes runs like real instance maps.
    """
    b = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, 3 * max_side + 10))
    pool = draw(st.lists(st.integers(0, max_id), min_size=1, max_size=12, unique=True))
    pool.append(draw(st.integers(2049, max_id)))
    seed = draw(st.integers(0, 2**32 - 1))
    block = draw(st.sampled_from([1, 2, 5]))
    rng = np.random.default_rng(seed)
    small = rng.choice(pool, size=(b, -(-h // block), -(-w // block)))
    instances = small.repeat(block, 1).repeat(block, 2)[:, :h, :w].astype(np.int32)
    labels = rng.integers(0, 35, size=(b, h, w), dtype=np.uint8)
    return np.ascontiguousarray(instances), labels


def check_compaction(inst: kernels.CompactInstances, instances, labels) -> None:
    ids, counts, original, classes = reference.compact(instances, labels)
    np.testing.assert_array_equal(inst.ids, ids)
    np.testing.assert_array_equal(inst.counts, counts)
    np.testing.assert_array_equal(inst.original, original)
    np.testing.assert_array_equal(inst.classes, classes)
    assert inst.kmax == counts.max()
    assert inst.ids.dtype == inst.counts.dtype == inst.original.dtype == np.int32


@SETTINGS
@given(instance_maps())
def test_compaction_numbers_instances_by_first_appearance(maps):
    instances, labels = maps
    check_compaction(kernels.compact_instances(instances, labels), instances, labels)


@SETTINGS
@given(instance_maps(), st.sampled_from([np.uint16, np.int64]))
def test_compaction_accepts_uint16_and_int64_ids(maps, dtype):
    instances, labels = maps
    inst = kernels.compact_instances(instances.astype(dtype), labels)
    check_compaction(inst, instances, labels)


def test_compaction_of_one_instance_and_of_all_distinct_ids():
    labels = np.full((2, 7, 9), 3, np.uint8)
    one = kernels.compact_instances(np.full((2, 7, 9), 2**31 - 1, np.int32), labels)
    assert one.counts.tolist() == [1, 1] and one.original.tolist() == [[2**31 - 1]] * 2
    assert not one.ids.any()
    distinct = np.random.default_rng(0).permutation(2 * 7 * 9 * 1000)[: 2 * 7 * 9]
    distinct = distinct.reshape(2, 7, 9).astype(np.int32)
    check_compaction(kernels.compact_instances(distinct, labels), distinct, labels)


def test_compaction_spans_the_int32_id_range_across_batch_images():
    rng = np.random.default_rng(1)
    instances = rng.choice([0, 1, 2**31 - 1, 70000, 33001], size=(3, 64, 33)).astype(np.int32)
    instances[1] = 5  # one image with a single instance: padding in the others' tables
    labels = rng.integers(0, 256, size=instances.shape, dtype=np.uint8)
    inst = kernels.compact_instances(instances, labels)
    check_compaction(inst, instances, labels)
    assert inst.original[1, 1:].tolist() == [-1] * (inst.kmax - 1)


def test_compaction_rejects_negative_and_too_large_ids():
    labels = np.zeros((2, 3, 4), np.uint8)
    instances = np.zeros((2, 3, 4), np.int32)
    instances[1, 2, 1] = -7
    with pytest.raises(InputError, match=r"negative id -7 at image 1 .*y=2, x=1"):
        kernels.compact_instances(instances, labels)
    with pytest.raises(InputError, match="outside"):
        kernels.compact_instances(np.full((2, 3, 4), 2**31, np.int64), labels)
    with pytest.raises(InputError, match="shape"):
        kernels.compact_instances(instances, labels[:, :2])


@SETTINGS
@given(instance_maps(), st.sampled_from([0xAB, 0x54]))
def test_boundaries_follow_the_four_neighbour_rule(maps, poison):
    instances, _ = maps
    out = np.full(instances.shape, poison, np.uint8)
    _native.instance_boundaries(instances, out)
    expected = reference.boundaries(instances)
    np.testing.assert_array_equal(out, expected)
    # Compact ids give the same map as the original ids (equality is preserved).
    compact = kernels.compact_instances(instances, np.zeros(instances.shape, np.uint8))
    np.testing.assert_array_equal(kernels.instance_boundaries(compact.ids), expected)
    np.testing.assert_array_equal(kernels.instance_boundaries(instances.astype(np.int64)), expected)


@SETTINGS
@given(instance_maps(), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_pooling_gives_each_pixel_its_instance_mean(maps, channels, seed):
    instances, labels = maps
    inst = kernels.compact_instances(instances, labels)
    rng = np.random.default_rng(seed)
    b, h, w = instances.shape
    features = rng.normal(size=(b, channels, h, w)).astype(np.float32)
    means = np.full((b, inst.kmax, channels), np.nan, np.float32)
    broadcast = np.full(features.shape, np.nan, np.float32)
    assert _native.instance_pool(features, inst.ids, inst.kmax, means, broadcast)
    expected_means, expected_map = reference.pool(features, inst.ids, inst.kmax)
    np.testing.assert_allclose(means, expected_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(broadcast, expected_map, rtol=1e-5, atol=1e-6)
    api_means, api_map = kernels.instance_pool(features, inst)
    np.testing.assert_array_equal(api_means, means)
    np.testing.assert_array_equal(api_map, broadcast)


def test_pooling_equals_the_per_instance_loop_and_rejects_bad_ids():
    rng = np.random.default_rng(2)
    instances = rng.choice([3, 26001, 26002, 7], size=(2, 8, 3)).repeat(4, 1).repeat(8, 2)
    inst = kernels.compact_instances(instances.astype(np.int32), np.zeros((2, 32, 24), np.uint8))
    features = rng.uniform(-1, 1, size=(2, 4, 32, 24)).astype(np.float32)
    _, broadcast = kernels.instance_pool(features, inst)
    loop = reference.pool_per_instance_loop(features, inst.ids)
    np.testing.assert_allclose(broadcast, loop, rtol=1e-5, atol=1e-6)
    inst.ids[1, 5, 5] = inst.kmax
    with pytest.raises(InputError, match="outside"):
        kernels.instance_pool(features, inst)


@SETTINGS
@given(
    instance_maps(),
    st.integers(1, 40),
    st.booleans(),
    st.sampled_from(["table", "zeros", "none"]),
    st.sampled_from(sorted(NP_DTYPES)),
    st.integers(0, 2**32 - 1),
)
def test_assembled_input_matches_the_reference(maps, label_nc, edges, features, dtype, seed):
    instances, labels = maps
    rng = np.random.default_rng(seed)
    labels = (labels % label_nc).astype(np.uint8)
    inst = kernels.compact_instances(instances, labels)
    b = labels.shape[0]
    table = rng.normal(size=(b, inst.kmax, 3)).astype(np.float32) if features == "table" else None
    feat_channels = 2 if features == "zeros" else 0
    expected = reference.assemble(labels, inst.ids, label_nc, edges, table, feat_channels)
    out = np.full(expected.shape, np.nan, NP_DTYPES[dtype])
    result = kernels.assemble_input(
        labels, inst, label_nc, edges, table, dtype, out=out, feat_channels=feat_channels
    )
    assert result is out
    # fp16/bf16 outputs equal the fp32 result cast to that dtype, bit for bit.
    bits = np.uint32 if dtype == "float32" else np.uint16
    np.testing.assert_array_equal(out.view(bits), expected.astype(out.dtype).view(bits))


@settings(max_examples=30, deadline=None)
@given(instance_maps(max_side=40), st.sampled_from(sorted(NP_DTYPES)))
def test_assembly_into_a_misaligned_caller_buffer(maps, dtype):
    """A caller's buffer need not be 16-byte aligned (streaming stores align themselves)."""
    instances, labels = maps
    inst = kernels.compact_instances(instances, labels)
    table = np.random.default_rng(5).normal(size=(labels.shape[0], inst.kmax, 2)).astype(np.float32)
    expected = kernels.assemble_input(labels, inst, 35, True, table, dtype)
    storage = np.full(expected.size + 1, np.nan, NP_DTYPES[dtype])
    out = storage[1:].reshape(expected.shape)
    kernels.assemble_input(labels, inst, 35, True, table, dtype, out)
    np.testing.assert_array_equal(out.view(np.uint8), expected.view(np.uint8))


def test_assembly_without_instances_is_one_hot_only():
    labels = np.random.default_rng(3).integers(0, 5, size=(2, 9, 11), dtype=np.uint8)
    out = kernels.assemble_input(labels, None, 5, False, None, feat_channels=3)
    np.testing.assert_array_equal(out, reference.assemble(labels, None, 5, False, None, 3))
    with pytest.raises(InputError, match="edges"):
        kernels.assemble_input(labels, None, 5, True, None)


@pytest.mark.parametrize("dtype", sorted(NP_DTYPES))
def test_assembly_for_a_reader_of_the_labels_leaves_the_one_hot_channels_alone(dtype):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 35, size=(2, 9, 37), dtype=np.uint8)
    inst = kernels.compact_instances(rng.integers(0, 6, (2, 9, 37)).astype(np.int32), labels)
    table = rng.normal(0, 1, (2, inst.kmax, 3)).astype(np.float32)
    full = kernels.assemble_input(labels, inst, 35, True, table, dtype)
    out = np.full(full.shape, 7, NP_DTYPES[dtype])
    kernels.assemble_input(labels, inst, 35, True, table, dtype, out, one_hot=False)
    assert (out[:, :35].astype(np.float32) == 7).all()  # untouched
    np.testing.assert_array_equal(out[:, 35:], full[:, 35:])
    with pytest.raises(InputError, match="label_nc"):  # labels are still checked
        kernels.assemble_input(labels, inst, 20, True, table, dtype, one_hot=False)


@pytest.mark.parametrize("dtype", sorted(NP_DTYPES))
def test_feature_values_round_like_numpy_and_ml_dtypes(dtype):
    """The shared float->fp16/bf16 conversion: subnormals, rounding ties, overflow, inf, NaN."""
    rng = np.random.default_rng(4)
    special = [0.0, -0.0, 1e-8, 6e-8, 3e-5, 65504.0, 65519.0, 65520.0, 1e6, np.inf, -np.inf, 1.5]
    ties = np.array([1 + 2**-11, 1 + 3 * 2**-11, 1 + 2**-8, 1 + 3 * 2**-8], np.float32)
    values = np.concatenate([special, ties, rng.normal(scale=100, size=200)]).astype(np.float32)
    values = np.concatenate([values, -values, rng.normal(scale=1e-6, size=100).astype(np.float32)])
    k = len(values)
    ids = np.arange(k, dtype=np.int32).reshape(1, 1, k)
    inst = kernels.compact_instances(ids, np.zeros((1, 1, k), np.uint8))
    table = values.reshape(1, k, 1)
    out = kernels.assemble_input(np.zeros((1, 1, k), np.uint8), inst, 1, False, table, dtype)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out[0, 1, 0], values.astype(NP_DTYPES[dtype]))
    nan = kernels.assemble_input(
        np.zeros((1, 1, 1), np.uint8),
        kernels.compact_instances(np.zeros((1, 1, 1), np.int32), np.zeros((1, 1, 1), np.uint8)),
        1,
        False,
        np.full((1, 1, 1), np.nan, np.float32),
        dtype,
    )
    assert np.isnan(nan[0, 1].astype(np.float32)).all()


def test_label_at_or_above_label_nc_names_value_image_and_pixel():
    labels = np.zeros((3, 5, 6), np.uint8)
    labels[2, 4, 3] = 35
    labels[2, 4, 5] = 200
    with pytest.raises(InputError, match=r"value 35 at image 2 .*y=4, x=3.* label_nc=35"):
        kernels.assemble_input(labels, None, 35, False, None)


def test_assembly_rejects_mismatched_buffers_and_tables():
    labels = np.zeros((1, 4, 4), np.uint8)
    inst = kernels.compact_instances(np.zeros((1, 4, 4), np.int32), labels)
    with pytest.raises(InputError, match="out"):
        kernels.assemble_input(labels, inst, 3, True, None, out=np.empty((1, 3, 4, 4), np.float32))
    with pytest.raises(InputError, match="out"):
        kernels.assemble_input(labels, inst, 3, True, None, "float16", np.empty((1, 4, 4, 4)))
    with pytest.raises(InputError, match="feature_table"):
        kernels.assemble_input(labels, inst, 3, True, np.zeros((1, 2, 3), np.float32))
    with pytest.raises(InputError, match="dtype"):
        kernels.assemble_input(labels, inst, 3, True, None, "int8")
    with pytest.raises(InputError, match="labels: expected dtype uint8"):
        kernels.assemble_input(labels.astype(np.int32), inst, 3, True, None)


finite_or_not = st.one_of(
    st.floats(-1.5, 1.5, width=32), st.floats(width=32), st.sampled_from([np.nan, 0.0, -1.0, 1.0])
)


@SETTINGS
@given(
    st.lists(finite_or_not, min_size=3, max_size=3 * 2 * 7 * 5),
    st.sampled_from(sorted(NP_DTYPES)),
    st.sampled_from([0xAB, 0x54]),
)
def test_uint8_conversion_rounds_half_up_and_saturates(values, dtype, poison):
    n = len(values) // 3 * 3
    with np.errstate(over="ignore"):
        output = np.array(values[:n], np.float32).astype(NP_DTYPES[dtype])
    output = output.reshape(1, 3, 1, n // 3)
    rgb = np.full((1, 1, n // 3, 3), poison, np.uint8)
    _native.to_uint8_rgb(output, kernels.DTYPES[dtype][1], rgb)
    np.testing.assert_array_equal(rgb, reference.to_uint8(output))
    np.testing.assert_array_equal(kernels.to_uint8_rgb(output), rgb)


def test_uint8_conversion_fixed_points():
    x = np.array([-1, 0, 1, np.nan, 2, -3, np.inf, -np.inf, -0.5, -1 + 1 / 127.5])
    out = kernels.to_uint8_rgb(np.tile(x.astype(np.float32), (2, 3, 1, 1)))
    assert out[1, 0, :, 2].tolist() == [0, 128, 255, 0, 255, 0, 255, 0, 64, 1]
    with pytest.raises(InputError, match="3 channels"):
        kernels.to_uint8_rgb(np.zeros((1, 4, 2, 2), np.float32))


def test_concurrent_callers_get_exact_results():
    """Server threads call the kernels at once (the GIL is released): every result stays right."""

    def inputs(seed: int):
        rng = np.random.default_rng(seed)
        instances = rng.choice([5, 26001, 26002, 33000], size=(2, 12, 20)).repeat(4, 1).repeat(4, 2)
        labels = (instances // 1000 % 35).astype(np.uint8)
        features = rng.normal(size=(2, 3, 48, 80)).astype(np.float32)
        return instances.astype(np.int32), labels, features, rng.normal(size=(2, 4, 3))

    def native(seed: int):
        instances, labels, features, table = inputs(seed)
        inst = kernels.compact_instances(instances, labels)
        table = table[:, : inst.kmax].astype(np.float32)
        dense = kernels.assemble_input(labels, inst, 35, True, table, "float16")
        return inst.ids, dense, kernels.instance_pool(features, inst)[1]

    def expected(seed: int):
        instances, labels, features, table = inputs(seed)
        ids, _, _, _ = reference.compact(instances, labels)
        kmax = int(ids.max()) + 1
        table = table[:, :kmax].astype(np.float32)
        dense = reference.assemble(labels, ids, 35, True, table).astype(np.float16)
        return ids, dense, reference.pool(features, ids, kmax)[1]

    seeds = list(range(16))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(native, seeds))
    for seed, got in zip(seeds, results, strict=True):
        ids, dense, pooled = expected(seed)
        np.testing.assert_array_equal(got[0], ids)
        np.testing.assert_array_equal(got[1], dense)
        np.testing.assert_allclose(got[2], pooled, rtol=1e-5, atol=1e-6)


def test_real_cityscapes_frame(cityscapes_sample):
    """A real 2048x1024 frame: compaction, boundaries and assembly agree with the references."""
    name = sorted((cityscapes_sample / "test_inst").glob("*.png"))[0]
    instances = np.asarray(Image.open(name))[None]
    label_name = name.name.replace("instanceIds", "labelIds")
    labels = np.asarray(Image.open(cityscapes_sample / "test_label" / label_name))[None]
    inst = kernels.compact_instances(instances, labels)
    check_compaction(inst, instances.astype(np.int32), labels)
    out = kernels.assemble_input(labels, inst, 35, True, None, feat_channels=3)
    np.testing.assert_array_equal(out[:, 35], reference.boundaries(instances.astype(np.int32)))
    np.testing.assert_array_equal(out[:, :35].argmax(1), labels)
