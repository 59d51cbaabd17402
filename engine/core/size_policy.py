"""What to do with a map whose size is not a multiple of the generator's factor.

The generator halves the resolution `n_downsample` times and doubles it back, so height and width
must be multiples of `size_multiple`. Policies: reflect-pad and crop the output back (default;
the content is unchanged), resize (nearest for ids, the output resized back), or reject.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image

from p2phd.common.decode import DEFAULT_MAX_PIXELS
from p2phd.common.errors import ConfigError, InputError

# The longest side the generator computes for one image (after the size policy): with the
# pixel limit it bounds a request's work and its aspect (a 1 x N strip padded to 32 x N).
DEFAULT_MAX_SIDE = 8192


def parse_size(text: str, min_side: int = 1) -> tuple[int, int]:
    """'HxW' -> (h, w), within what p2phd serves by default: an engine, a benchmark or a
    dataset at a larger size would only exhaust memory."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not match or min(int(match[1]), int(match[2])) < max(min_side, 1):
        at_least = f", at least {min_side}x{min_side}" if min_side > 1 else ""
        raise ConfigError(f"--size {text!r}: expected HxW{at_least}, e.g. 512x1024")
    h, w = int(match[1]), int(match[2])
    check_servable(h, w, f"--size {text}")
    return h, w


def check_servable(h: int, w: int, what: str) -> None:
    """ConfigError naming `what` when h x w is past the largest input p2phd serves by default."""
    if h * w > DEFAULT_MAX_PIXELS or max(h, w) > DEFAULT_MAX_SIDE:
        raise ConfigError(
            f"{what}: past the largest input p2phd serves by default ({DEFAULT_MAX_PIXELS} "
            f"pixels, {DEFAULT_MAX_SIDE} a side)"
        )


class SizePolicy(StrEnum):
    PAD = "pad"
    RESIZE = "resize"
    REJECT = "reject"

    @classmethod
    def parse(cls, value: str | SizePolicy) -> SizePolicy:
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ConfigError(f"size policy {value!r} is not one of {choices}") from None


@dataclass
class Fitted:
    """Maps fitted to the generator's size, and how to bring the output back to the input size.

    `images` (optional) are reference photos [B, H, W, 3] fitted the same way as the maps.
    """

    labels: np.ndarray
    instances: np.ndarray | None
    images: np.ndarray | None
    restore: Callable[[np.ndarray], np.ndarray]


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _resize_stack(a: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize each [H, W] or [H, W, 3] image of a batch to (h, w) with PIL."""
    h, w = size
    out = []
    for img in a:
        if img.dtype == np.int32:  # PIL mode "I": nearest keeps 32-bit ids exact
            out.append(np.asarray(Image.fromarray(img, mode="I").resize((w, h), resample)))
        elif img.ndim == 3 and img.shape[-1] == 1:  # a grey image [H, W, 1]
            out.append(np.asarray(Image.fromarray(img[..., 0]).resize((w, h), resample))[..., None])
        else:
            out.append(np.asarray(Image.fromarray(img).resize((w, h), resample)))
    return np.stack(out).astype(a.dtype, copy=False)


def fitted_shape(
    h: int, w: int, multiple: int, policy: SizePolicy, *, min_side: int = 1, what: str = "label map"
) -> tuple[int, int]:
    """The (H, W) the generator computes for an h x w input under `policy`, without touching
    any pixel: what a request costs is known (and can be refused) before anything is allocated.
    Raises InputError under REJECT when h x w does not fit as it is."""
    if h % multiple == 0 and w % multiple == 0 and min(h, w) >= min_side:
        return h, w
    if policy is SizePolicy.REJECT:
        if h % multiple == 0 and w % multiple == 0:  # a multiple, but below the minimum
            raise InputError(
                f"{what} size {h}x{w} (HxW) is below this model's minimum of {min_side} pixels "
                "a side; use the 'pad' or 'resize' size policy"
            )
        raise InputError(
            f"{what} size {h}x{w} (HxW) is not a multiple of {multiple}, which this model "
            "needs; resize it, or use the 'pad' or 'resize' size policy"
        )
    if policy is SizePolicy.PAD:
        return max(_round_up(h, multiple), min_side), max(_round_up(w, multiple), min_side)
    least = _round_up(max(min_side, multiple), multiple)
    return max(least, round(h / multiple) * multiple), max(least, round(w / multiple) * multiple)


def fit(
    labels: np.ndarray | None,
    instances: np.ndarray | None,
    multiple: int,
    policy: SizePolicy,
    images: np.ndarray | None = None,
    *,
    min_side: int = 1,
) -> Fitted:
    """Fit a batch of maps [B, H, W] (and optional photos [B, H, W, C]) to `multiple`; an
    image model's batch is `images` alone (`labels` None). `min_side` is the least height and
    width the network takes (pix2pixHD's reflection-padded bottleneck needs 2 pixels there)."""
    _, h, w = (labels if labels is not None else images).shape[:3]
    what = "label map" if labels is not None else "input image"
    nh, nw = fitted_shape(h, w, multiple, policy, min_side=min_side, what=what)
    if (nh, nw) == (h, w):
        return Fitted(labels, instances, images, lambda out: out)
    if policy is SizePolicy.PAD:
        pad = ((0, 0), (0, nh - h), (0, nw - w))

        def pad_all(a: np.ndarray | None) -> np.ndarray | None:
            if a is None:
                return None
            return np.pad(
                a, pad + ((0, 0),) * (a.ndim - 3), mode="reflect" if min(h, w) > 1 else "edge"
            )

        return Fitted(
            pad_all(labels), pad_all(instances), pad_all(images), lambda out: out[:, :h, :w]
        )
    nearest = Image.Resampling.NEAREST
    return Fitted(
        None if labels is None else _resize_stack(labels, (nh, nw), nearest),
        None if instances is None else _resize_stack(instances.astype(np.int32), (nh, nw), nearest),
        None if images is None else _resize_stack(images, (nh, nw), Image.Resampling.BILINEAR),
        lambda out: _resize_stack(out, (h, w), Image.Resampling.BICUBIC),
    )
