"""Image inputs of image-to-image models (the pix2pix family): decode, validate, normalise.

Such a package's generator takes an image of `input_nc` channels (3: RGB, 1: grey) normalised
to [-1, 1], as the original pix2pix data loader feeds it (ToTensor, then Normalize(0.5, 0.5)).
Files may be PNG or JPEG; their size is checked against a pixel limit before decoding.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from p2phd.common.decode import DEFAULT_MAX_PIXELS, Source, read_input_file
from p2phd.common.errors import InputError

FORMATS = ["PNG", "JPEG"]
MODES = {3: "RGB", 1: "L"}


def decode_image(
    src: Source, channels: int = 3, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode a PNG/JPEG file (path or bytes) into uint8 [H, W, channels]."""
    label = name or ("<bytes>" if isinstance(src, bytes | bytearray) else str(src))
    if channels not in MODES:
        raise InputError(
            f"input image {label}: models with {channels} input channels take no image"
        )
    if isinstance(src, bytes | bytearray):
        data = bytes(src)
    else:
        data = read_input_file(src, "input image", max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        w, h = img.size
        if w * h > max_pixels:
            raise InputError(
                f"input image {label}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}"
            )
        img = img.convert(MODES[channels])
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"input image {label}: too many pixels ({e})") from e
    except Image.UnidentifiedImageError as e:
        raise InputError(f"input image {label}: not a PNG or JPEG file") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"input image {label}: corrupt or truncated ({e})") from e
    return np.asarray(img, np.uint8).reshape(h, w, channels)


def validate_images(images: np.ndarray, channels: int, *, name: str = "input image") -> None:
    """Check a batch uint8 [B, H, W, C] against the model's input channels."""
    if images.dtype != np.uint8:
        raise InputError(f"{name}: dtype {images.dtype}; expected uint8 pixels")
    if images.ndim != 4 or 0 in images.shape:
        raise InputError(f"{name}: shape {images.shape}; expected [H, W, C] or [B, H, W, C]")
    if images.shape[-1] != channels:
        raise InputError(
            f"{name}: {images.shape[-1]} channels; this model takes {channels} "
            f"({MODES.get(channels, channels)})"
        )


def to_model_input(images: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """uint8 [B, H, W, C] -> [B, C, H, W] in [-1, 1] (x / 127.5 - 1), C-contiguous."""
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return np.ascontiguousarray(x, dtype)
