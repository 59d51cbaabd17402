"""PNG output (p2phd.common.png): what is written decodes to the same pixels, compressed."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from p2phd.common.png import encode_png


def test_a_rendered_image_is_written_losslessly_and_compressed(cityscapes_sample):
    photo = sorted((cityscapes_sample / "train_img").glob("*.png"))[0]
    image = np.asarray(Image.open(photo).convert("RGB").resize((512, 256)))
    png = encode_png(image)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    stored = encode_png(image, compress_level=0)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(stored))), image)
    assert len(png) < 0.8 * len(stored)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (33, 17)])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_any_size_and_level_round_trips(shape, level):
    """Noise makes the Sub filter's differences wrap around 0 and 255."""
    image = np.random.default_rng(shape[0] * 31 + shape[1]).integers(0, 256, (*shape, 3), np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(image, compress_level=level)))
    assert decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
    ],  # fmt: skip
)
def test_anything_but_an_rgb_image_is_refused_by_name(image):
    with pytest.raises(ValueError, match=r"uint8 \[H, W, 3\]"):
        encode_png(image)
