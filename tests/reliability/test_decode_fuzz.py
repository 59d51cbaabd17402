"""The decode path under fuzzing: whatever bytes arrive, the answer is decoded ids or an InputError
with a reason, never another exception, and a file's declared size never turns into gigabytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from p2phd.common.decode import (
    DEFAULT_MAX_PIXELS,
    decode_instance,
    decode_label,
    decode_pair,
    validate_maps,
)
from p2phd.common.errors import InputError
from tests.reliability.corpus import bad_cases, crafted_png, grey, palette_png, png

LABEL_NC = 12
CASES = bad_cases(LABEL_NC, DEFAULT_MAX_PIXELS)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_case(label, instance):
    if isinstance(label, np.ndarray):
        validate_maps(label, instance, LABEL_NC)
        return label, instance
    return decode_pair(label, instance, LABEL_NC)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_corpus_case_is_an_input_error_with_its_reason(case):
    with pytest.raises(InputError) as e:
        decode_case(case.label, case.instance)
    assert case.reason in str(e.value)


def test_bombs_are_refused_without_allocating_their_pixels(memory):
    memory.reset_peak()
    before = memory.rss()
    bombs = [c for c in CASES if "bomb" in c.name or "2GiB" in c.name or "limit" in c.name]
    for case in bombs * 5:
        with pytest.raises(InputError):
            decode_case(case.label, case.instance)
    # 100000x100000 8-bit would be 10 GB; the refused bombs may not cost more than a few MB.
    assert memory.peak() - before < 64


def _decoded_or_refused(fn, data: bytes, modes_ok) -> None:
    try:
        out = fn(data)
    except InputError as e:
        assert str(e)  # a reason, never an empty message
        return
    assert out.ndim == 2 and 0 not in out.shape
    assert out.dtype == modes_ok


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_raise_input_error(data):
    _decoded_or_refused(decode_label, data, np.uint8)
    _decoded_or_refused(decode_instance, data, np.int32)


VALID = png(grey(12, 20, 3))


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.integers(1, len(VALID)),
)
def test_mutated_and_truncated_pngs_decode_or_raise_input_error(flips, cut):
    data = bytearray(VALID)
    for offset, value in flips:
        data[offset] = value
    _decoded_or_refused(decode_label, bytes(data), np.uint8)
    _decoded_or_refused(decode_label, VALID[:cut], np.uint8)


@FUZZ
@given(
    st.integers(1, 24),
    st.integers(1, 24),
    st.integers(0, 2**16 - 1),
    st.data(),
)
def test_valid_maps_of_any_small_size_round_trip_exactly(h, w, top_id, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, LABEL_NC, (h, w), dtype=np.uint8)
    instances = rng.integers(0, top_id + 1, (h, w)).astype(np.uint16)
    instances.flat[0] = top_id  # ids up to 65535 survive 16-bit PNGs unchanged
    as_palette = data.draw(st.booleans())
    label_png = palette_png(labels) if as_palette else png(labels)
    got_labels, got_instances = decode_pair(label_png, png(instances), LABEL_NC)
    assert np.array_equal(got_labels, labels)
    assert got_instances.dtype == np.int32 and np.array_equal(got_instances, instances)


def test_8_bit_instance_maps_are_accepted_as_ids_below_256():
    labels = grey(8, 8, 3)
    ids = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    _, instances = decode_pair(png(labels), png(ids), LABEL_NC)
    assert np.array_equal(instances, ids.astype(np.int32))


@FUZZ
@given(st.integers(1, 100_000), st.integers(1, 100_000), st.integers(1, 4096))
def test_declared_size_beyond_the_limit_is_refused_naming_the_limit(w, h, limit):
    assume(w * h > limit)
    with pytest.raises(InputError, match=f"exceeds the limit of {limit}"):
        decode_label(crafted_png(w, h), max_pixels=limit)
