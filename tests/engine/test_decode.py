"""PNG decoding: the formats users have are read exactly, bad files get an InputError naming why."""

import io

import numpy as np
import pytest
from PIL import Image

from p2phd.common.decode import decode_instance, decode_label, decode_pair
from p2phd.common.errors import InputError


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 35, (24, 40), dtype=np.uint8)
    instances = (labels.astype(np.int32) * 1000 + rng.integers(0, 3, labels.shape)).astype(np.int32)
    return labels, instances


def test_label_and_16_bit_instance_round_trip_from_files(tmp_path, maps):
    labels, instances = maps
    (tmp_path / "l.png").write_bytes(png(labels))
    (tmp_path / "i.png").write_bytes(png(instances.astype(np.uint16)))
    got_l, got_i = decode_pair(tmp_path / "l.png", tmp_path / "i.png", label_nc=35)
    assert got_l.dtype == np.uint8 and np.array_equal(got_l, labels)
    assert got_i.dtype == np.int32 and np.array_equal(got_i, instances)


def test_palette_labels_and_8_bit_instances_decode_to_raw_ids(maps):
    labels, _ = maps
    img = Image.fromarray(labels, mode="L").convert("P")  # palette indices == ids
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert np.array_equal(decode_label(buf.getvalue()), labels)
    got = decode_instance(png(labels))
    assert got.dtype == np.int32 and np.array_equal(got, labels)


def test_rgb_label_map_is_rejected_with_a_hint(maps):
    rgb = np.stack([maps[0]] * 3, axis=-1)
    with pytest.raises(InputError, match="mode 'RGB'.*colour"):
        decode_label(png(rgb), name="frame_0001.png")


def test_truncated_and_non_png_files_are_named(tmp_path, maps):
    data = png(maps[0])
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png.*(truncated|corrupt)"):
        decode_label(bad)
    buf = io.BytesIO()
    Image.fromarray(maps[0]).save(buf, format="BMP")
    with pytest.raises(InputError, match="not a PNG"):
        decode_label(buf.getvalue())
    with pytest.raises(InputError, match="cannot be read"):
        decode_label(tmp_path / "missing.png")


def test_pixel_limit_is_checked_before_decoding(maps):
    with pytest.raises(InputError, match="exceeds the limit of 100"):
        decode_label(png(maps[0]), max_pixels=100)


def test_mismatched_sizes_and_out_of_range_labels(maps):
    labels, instances = maps
    with pytest.raises(InputError, match="differs from label map"):
        decode_pair(png(labels), png(instances[:, :-1].astype(np.uint16)), label_nc=35)
    labels = labels.copy()
    labels[3, 5] = 40
    with pytest.raises(InputError, match=r"class id 40 at index \(3, 5\).*label_nc 35"):
        decode_pair(png(labels), None, label_nc=35)
