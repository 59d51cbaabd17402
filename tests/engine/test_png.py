"""PNG output (p2phd.common.png): what is written decodes to the same pixels, compressed."""

from __future__ import annotations

import io

import numpy as np
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
