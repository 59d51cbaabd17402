"""PNG decoding and validation of label and instance maps, with messages naming the problem.

A label map is 8-bit single-channel class ids (PIL mode "L", or "P" whose palette indices are the
ids); an instance map is 8-, 16- or 32-bit integer ids (Cityscapes: class*1000+k). Image sizes
are checked against a pixel limit before any pixel is decoded, so a small file cannot expand into
gigabytes (a decompression bomb).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings

import numpy as np
from PIL import Image

from p2phd.common.errors import InputError

DEFAULT_MAX_PIXELS = 2048 * 2048 * 2
# No image file within a pixel limit is larger than this per pixel: 16-bit RGBA stored
# uncompressed (8 bytes), plus headers and chunks (1 MiB). A larger file is not read.
MAX_BYTES_PER_PIXEL = 8
LABEL_MODES = ("L", "P")
INSTANCE_MODES = ("L", "P", "I;16", "I;16L", "I;16B", "I")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Source = str | os.PathLike | bytes


def _name(src: Source, name: str | None) -> str:
    if name:
        return name
    return "<bytes>" if isinstance(src, bytes | bytearray) else str(src)


def max_file_bytes(max_pixels: int) -> int:
    """The largest image file read under `max_pixels`."""
    return max_pixels * MAX_BYTES_PER_PIXEL + (1 << 20)


def read_input_file(path: str | os.PathLike, what: str, max_pixels: int) -> bytes:
    """The bytes of an image file: `read_regular_file` within `max_file_bytes(max_pixels)`."""
    return read_regular_file(path, what, max_file_bytes(max_pixels))


def read_text_file(path: str | os.PathLike, what: str, limit: int, expected: str) -> str:
    """`read_regular_file`'s bytes as UTF-8 text; InputError saying the file is not `expected`
    (e.g. "a YAML text file") where they are not text."""
    try:
        return read_regular_file(path, what, limit).decode()
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not {expected} ({e.reason} at byte {e.start})") from None


def read_regular_file(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The bytes of a regular file no larger than `limit`.

    Opened non-blocking and checked with fstat, so a FIFO (which would block forever), a
    device such as /dev/zero (endless bytes) or a directory is refused by name, and at most
    limit + 1 bytes are ever read, so a file that grows while it is read cannot exhaust memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise InputError(f"{what} {path}: cannot be read ({e.strerror or e})") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {path}: not a regular file (a FIFO, device or directory)")
        if st.st_size > limit:
            raise InputError(
                f"{what} {path}: {st.st_size} bytes exceeds the file limit of {limit} bytes"
            )
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise InputError(f"{what} {path}: cannot be read ({e.strerror or e})") from e
    if len(data) > limit:
        raise InputError(f"{what} {path}: larger than the file limit of {limit} bytes")
    return data


def _check_declared_size(data: bytes, what: str, label: str, max_pixels: int) -> None:
    """Refuse a PNG whose IHDR declares more than `max_pixels`, before any decoder sees it."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        w, h = struct.unpack(">II", data[16:24])
        if w * h > max_pixels:
            raise InputError(
                f"{what} {label}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}"
            )


def _open_png(src: Source, what: str, name: str | None, max_pixels: int) -> tuple[Image.Image, str]:
    """Open `src` as a PNG, check its size against `max_pixels`, and decode its pixels."""
    label = _name(src, name)
    if isinstance(src, bytes | bytearray):
        data = bytes(src)
    else:
        data = read_input_file(src, what, max_pixels)
    _check_declared_size(data, what, label, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=["PNG"])
        w, h = img.size
        if w * h > max_pixels:
            raise InputError(
                f"{what} {label}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}"
            )
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"{what} {label}: too many pixels ({e})") from e
    except Image.UnidentifiedImageError as e:
        if data.startswith(PNG_SIGNATURE):  # the signature is there, the rest is not
            raise InputError(f"{what} {label}: corrupt or truncated PNG") from e
        raise InputError(f"{what} {label}: not a PNG file") from e
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{what} {label}: corrupt or truncated PNG ({e})") from e
    return img, label


def decode_label(
    src: Source, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode a label-map PNG into uint8 class ids [H, W]."""
    img, label = _open_png(src, "label map", name, max_pixels)
    if img.mode not in LABEL_MODES:
        hint = " (a colour visualisation?)" if img.mode in ("RGB", "RGBA") else ""
        raise InputError(
            f"label map {label}: PNG mode {img.mode!r}{hint}; expected 8-bit single-channel "
            "class ids (mode 'L', or 'P' with the ids as palette indices)"
        )
    return np.asarray(img, dtype=np.uint8)


def decode_instance(
    src: Source, *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode an instance-map PNG into int32 ids [H, W]."""
    img, label = _open_png(src, "instance map", name, max_pixels)
    if img.mode not in INSTANCE_MODES:
        raise InputError(
            f"instance map {label}: PNG mode {img.mode!r}; expected single-channel integer ids "
            "(8-, 16- or 32-bit grey)"
        )
    return np.asarray(img).astype(np.int32, copy=False)


def validate_maps(
    labels: np.ndarray, instances: np.ndarray | None, label_nc: int, *, name: str = "label map"
) -> None:
    """Check dtypes, equal shapes and that every class id is below `label_nc`."""
    if labels.dtype != np.uint8:
        raise InputError(f"{name}: dtype {labels.dtype}; expected uint8 class ids")
    if labels.ndim not in (2, 3) or 0 in labels.shape:
        raise InputError(f"{name}: shape {labels.shape}; expected [H, W] or [B, H, W]")
    if instances is not None:
        if instances.dtype not in (np.int32, np.uint16, np.uint8):
            raise InputError(f"instance map: dtype {instances.dtype}; expected int32 or uint16")
        if instances.shape != labels.shape:
            raise InputError(
                f"instance map: shape {instances.shape} differs from the label map's {labels.shape}"
            )
        if instances.dtype == np.int32 and instances.min() < 0:
            raise InputError("instance map: negative instance id")
    top = int(labels.max())
    if top >= label_nc:
        where = tuple(int(i) for i in np.argwhere(labels == top)[0])
        raise InputError(
            f"{name}: class id {top} at index {where}; this model has label_nc {label_nc} "
            f"(ids 0..{label_nc - 1})"
        )


def decode_pair(
    label_src: Source,
    instance_src: Source | None,
    label_nc: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    label_name: str | None = None,
    instance_name: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode and validate a label PNG and its optional instance PNG for a model.

    `label_name`/`instance_name` name the maps in messages (e.g. an upload's file name).
    """
    label_name = _name(label_src, label_name)
    labels = decode_label(label_src, name=label_name, max_pixels=max_pixels)
    instances = None
    if instance_src is not None:
        instance_name = _name(instance_src, instance_name)
        instances = decode_instance(instance_src, name=instance_name, max_pixels=max_pixels)
        if instances.shape != labels.shape:
            raise InputError(
                f"instance map {instance_name}: {instances.shape[1]}x"
                f"{instances.shape[0]} differs from label map {label_name}: "
                f"{labels.shape[1]}x{labels.shape[0]}"
            )
    validate_maps(labels, instances, label_nc, name=f"label map {label_name}")
    return labels, instances
