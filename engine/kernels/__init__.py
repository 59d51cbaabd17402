"""The non-network work of pix2pixHD inference as native CPU kernels (NumPy in, NumPy out).

The generator input is one-hot(label) ⊕ edges(instance) ⊕ features; these functions build it,
run the generator's first convolution on it as table lookups (`one_hot_labels`, `one_hot_conv`;
`one_hot_conv_levels` with the normalisation after it, quantised for an int8 layer), and
convert the generator output back to 8-bit RGB. Inputs are validated here with InputError
messages; the C++ kernels (`_native`, threaded, GIL released) trust what this module checked.
The same per-element arithmetic runs on the GPU through `p2phd.engine.kernels.cuda`.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from p2phd.common.errors import InputError
from p2phd.engine.kernels import _native

__all__ = [
    "DTYPES",
    "CompactInstances",
    "assemble_input",
    "compact_instances",
    "instance_boundaries",
    "instance_pool",
    "Levels",
    "OneHotConv",
    "one_hot_conv",
    "one_hot_conv_levels",
    "one_hot_labels",
    "to_uint8_rgb",
]

# Element types of the generator tensors, by name, with the code the native kernels use.
DTYPES: dict[str, tuple[np.dtype, int]] = {
    "float32": (np.dtype(np.float32), 0),
    "float16": (np.dtype(np.float16), 1),
    "bfloat16": (np.dtype(ml_dtypes.bfloat16), 2),
}
_INSTANCE_DTYPES = (np.int32, np.uint16, np.uint8, np.int64)
_INT32_MAX = np.iinfo(np.int32).max


@dataclass
class CompactInstances:
    """Instance ids renumbered densely per image, in order of first appearance in raster order."""

    ids: np.ndarray  # int32 [B,H,W], dense 0..counts[b]-1
    counts: np.ndarray  # int32 [B]
    original: np.ndarray  # int32 [B,Kmax], original instance ids, padding -1
    classes: np.ndarray  # int32 [B,Kmax], label at each instance's first pixel, padding -1

    @property
    def kmax(self) -> int:
        """The largest instance count in the batch (the padded width of `original`)."""
        return int(self.original.shape[1])


def _array(name: str, a: np.ndarray, dtypes: tuple, ndim: int) -> np.ndarray:
    """`a` as a C-contiguous array, checked for rank and element type."""
    if not isinstance(a, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(a).__name__}")
    if a.ndim != ndim:
        raise InputError(f"{name}: expected {ndim} dimensions, got shape {a.shape}")
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        expected = " or ".join(np.dtype(d).name for d in dtypes)
        raise InputError(f"{name}: expected dtype {expected}, got {a.dtype}")
    return np.ascontiguousarray(a)


def _same_shape(name: str, a: np.ndarray, shape: tuple[int, ...], of: str) -> None:
    if a.shape != shape:
        raise InputError(f"{name}: shape {a.shape} does not match {of} {shape}")


def _pixel(shape: tuple[int, ...], flat: int) -> str:
    b, y, x = np.unravel_index(flat, shape)
    return f"image {b} of the batch, pixel (y={y}, x={x})"


def compact_instances(instances: np.ndarray, labels: np.ndarray) -> CompactInstances:
    """Renumber instance ids [B,H,W] (0..2^31-1) densely per image; classes come from `labels`.

    `instances` is int32 or uint16 (read in place), uint8 or int64 (converted); `labels` is
    uint8 [B,H,W].
    """
    instances = _array("instances", instances, _INSTANCE_DTYPES, 3)
    labels = _array("labels", labels, (np.uint8,), 3)
    _same_shape("labels", labels, instances.shape, "instances")
    if instances.dtype == np.int64 and instances.size:
        low, high = int(instances.min()), int(instances.max())
        if low < 0 or high > _INT32_MAX:
            bad = low if low < 0 else high
            raise InputError(f"instances: id {bad} is outside 0..{_INT32_MAX}")
    if instances.dtype in (np.int64, np.uint8):
        instances = instances.astype(np.int32)
    ids = np.empty(instances.shape, np.int32)
    negative_at, counts, original, classes = _native.compact_instances(instances, labels, ids)
    if negative_at >= 0:
        value = int(instances.reshape(-1)[negative_at])
        where = _pixel(instances.shape, negative_at)
        raise InputError(f"instances: negative id {value} at {where}; expected 0..{_INT32_MAX}")
    return CompactInstances(ids=ids, counts=counts, original=original, classes=classes)


def instance_boundaries(ids: np.ndarray) -> np.ndarray:
    """1 where a 4-neighbour has another id, else 0: uint8 [B,H,W] from integer ids [B,H,W]."""
    ids = _array("ids", ids, _INSTANCE_DTYPES, 3)
    if ids.dtype in (np.uint16, np.uint8):
        ids = ids.astype(np.int32)
    elif ids.dtype == np.int64:  # compaction keeps equality and checks the range
        ids = compact_instances(ids, np.zeros(ids.shape, np.uint8)).ids
    edges = np.empty(ids.shape, np.uint8)
    _native.instance_boundaries(ids, edges)
    return edges


def _check_instances(inst: CompactInstances, shape: tuple[int, ...]) -> np.ndarray:
    """The compact ids of `inst`, checked against the image batch shape."""
    ids = _array("inst.ids", inst.ids, (np.int32,), 3)
    _same_shape("inst.ids", ids, shape, "the image batch")
    return ids


def instance_pool(features: np.ndarray, inst: CompactInstances) -> tuple[np.ndarray, np.ndarray]:
    """Average encoder features [B,C,H,W] per instance in one pass over the pixels.

    Returns (means float32 [B,Kmax,C], zeros for padding; broadcast float32 [B,C,H,W], each
    pixel holding its instance's mean).
    """
    features = _array("features", features, (np.float32,), 4)
    b, c, h, w = features.shape
    ids = _check_instances(inst, (b, h, w))
    means = np.empty((b, inst.kmax, c), np.float32)
    broadcast = np.empty(features.shape, np.float32)
    if not _native.instance_pool(features, ids, inst.kmax, means, broadcast):
        raise InputError(f"inst.ids: an id is outside 0..{inst.kmax - 1} (Kmax)")
    return means, broadcast


def assemble_input(
    labels: np.ndarray,
    inst: CompactInstances | None,
    label_nc: int,
    edges: bool,
    feature_table: np.ndarray | None,
    dtype: str = "float32",
    out: np.ndarray | None = None,
    *,
    feat_channels: int = 0,
    one_hot: bool = True,
) -> np.ndarray:
    """The dense generator input [B, label_nc + edges + F, H, W], every element written once.

    Channels: one-hot of `labels` (uint8 [B,H,W]), the instance boundary map when `edges`, then
    F feature channels holding feature_table[b, id, f] (float32 [B,Kmax,F]) at each pixel. With
    no table, `feat_channels` zero channels are written (a model with features run without
    style). `out` may be a preallocated C-contiguous buffer of the exact shape and dtype.
    `one_hot=False` leaves the one-hot channels unwritten, for a backend that reads the labels
    instead (`Backend.reads_one_hot`): a fresh buffer's pages there are then never touched.
    Raises InputError for a label >= label_nc, naming the value, image and pixel.
    """
    if dtype not in DTYPES:
        raise InputError(f"dtype: expected one of {sorted(DTYPES)}, got {dtype!r}")
    np_dtype, code = DTYPES[dtype]
    labels = _array("labels", labels, (np.uint8,), 3)
    b, h, w = labels.shape
    if not 1 <= label_nc <= 256:
        raise InputError(f"label_nc: expected 1..256, got {label_nc}")
    ids = None
    if inst is not None:
        ids = _check_instances(inst, labels.shape)
    elif edges:
        raise InputError("inst: instance ids are required when edges=True")
    feat = feat_channels
    if feature_table is not None:
        if inst is None:
            raise InputError("inst: instance ids are required with a feature_table")
        feature_table = _array("feature_table", feature_table, (np.float32,), 3)
        if feature_table.shape[:2] != (b, inst.kmax):
            raise InputError(
                f"feature_table: shape {feature_table.shape} does not match "
                f"[B={b}, Kmax={inst.kmax}, F]"
            )
        feat = feature_table.shape[2]
        if feat_channels not in (0, feat):
            raise InputError(
                f"feat_channels: {feat_channels} disagrees with feature_table's F={feat}"
            )
    elif feat_channels < 0:
        raise InputError(f"feat_channels: expected >= 0, got {feat_channels}")
    edges = bool(edges)  # the native side writes an edge channel for any truthy value
    shape = (b, label_nc + int(edges) + feat, h, w)
    if out is None:
        out = np.empty(shape, np_dtype)
    elif out.shape != shape or out.dtype != np_dtype or not out.flags.c_contiguous:
        raise InputError(
            f"out: expected a writable C-contiguous {dtype} array of shape {shape}, "
            f"got {out.dtype} {out.shape}"
        )
    elif not out.flags.writeable:
        raise InputError("out: the buffer is read-only")
    kmax = inst.kmax if inst is not None else 0
    bad_label, bad_id = _native.assemble_input(
        labels, ids, feature_table, label_nc, bool(one_hot), bool(edges), feat, kmax, code, out
    )
    if bad_label:
        flat = int(np.argmax(labels.reshape(-1) >= label_nc))
        value = int(labels.reshape(-1)[flat])
        raise InputError(
            f"labels: value {value} at {_pixel(labels.shape, flat)} is >= label_nc={label_nc}"
        )
    if bad_id:
        raise InputError(f"inst.ids: an id is outside 0..{kmax - 1} (Kmax)")
    return out


def to_uint8_rgb(output: np.ndarray) -> np.ndarray:
    """Generator output [B,3,H,W] (tanh range; f32/f16/bf16) -> uint8 RGB [B,H,W,3].

    Each value becomes clamp(round_half_up((x + 1) * 127.5), 0, 255), NaN -> 0. The original
    pix2pixHD truncated instead of rounding (half a step darker on average).
    """
    output = _array("output", output, tuple(d for d, _ in DTYPES.values()), 4)
    if output.shape[1] != 3:
        raise InputError(f"output: expected 3 channels (RGB), got shape {output.shape}")
    b, _, h, w = output.shape
    rgb = np.empty((b, h, w, 3), np.uint8)
    _native.to_uint8_rgb(output, {d: c for d, c in DTYPES.values()}[output.dtype], rgb)
    return rgb


MAX_TAPS = 31  # the widest kernel one_hot_conv takes (its row table is fixed-size)


@dataclass(frozen=True)
class OneHotConv:
    """A generator's first convolution, laid out for `one_hot_conv`: K x K (odd), reflection
    padding K//2, stride 1, over an input whose first `label_nc` channels are one-hot, to
    `channels_out` channels. taps float32 [K, K, C, Co] and bias [Co], Co padded with zeros to
    a multiple of 16 (the kernel's vector of channels)."""

    taps: np.ndarray
    bias: np.ndarray
    label_nc: int
    channels_out: int

    @classmethod
    def from_weights(cls, weight: np.ndarray, bias: np.ndarray, label_nc: int) -> OneHotConv:
        """From convolution weights [Co, C, K, K] and bias [Co]."""
        weight = np.asarray(weight, np.float32)
        bias = np.asarray(bias, np.float32)
        if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
            raise InputError(f"weight: expected [Co, C, K, K], got shape {weight.shape}")
        co, c, k, _ = weight.shape
        if k % 2 == 0 or k > MAX_TAPS:
            raise InputError(f"weight: kernel {k}x{k}; expected an odd size up to {MAX_TAPS}")
        if not 1 <= label_nc <= min(c, 256):
            raise InputError(f"label_nc: expected 1..{min(c, 256)}, got {label_nc}")
        if bias.shape != (co,):
            raise InputError(f"bias: expected shape ({co},), got {bias.shape}")
        padded = -(-co // 16) * 16
        taps = np.zeros((k, k, c, padded), np.float32)
        taps[..., :co] = weight.transpose(2, 3, 1, 0)
        return cls(taps, np.pad(bias, (0, padded - co)), label_nc, co)

    @property
    def channels(self) -> int:
        """C: the input channels the convolution reads."""
        return int(self.taps.shape[2])

    @property
    def macs_per_pixel(self) -> int:
        """The multiply-adds the convolution stands for per output pixel (K * K * C * Co)."""
        k, _, c, _ = self.taps.shape
        return int(k * k * c * self.channels_out)


def one_hot_labels(x: np.ndarray, label_nc: int) -> np.ndarray | None:
    """The labels uint8 [B, H, W] of a dense input x float32 [B, C, H, W] whose first label_nc
    channels are one-hot; None where they are not exactly one 1 and otherwise 0s at a pixel (not
    a label map's input)."""
    x = _array("x", x, (np.float32,), 4)
    if not 1 <= label_nc <= min(x.shape[1], 256):
        raise InputError(f"label_nc: expected 1..{min(x.shape[1], 256)}, got {label_nc}")
    labels = np.empty((x.shape[0], *x.shape[2:]), np.uint8)
    return labels if _native.one_hot_labels(x, label_nc, labels) else None


def _conv_input(x: np.ndarray, labels: np.ndarray, conv: OneHotConv) -> tuple:
    """x and labels checked for `conv` (one_hot_conv's and one_hot_conv_levels' inputs)."""
    x = _array("x", x, (np.float32,), 4)
    b, c, h, w = x.shape
    labels = _array("labels", labels, (np.uint8,), 3)
    _same_shape("labels", labels, (b, h, w), "x's batch")
    k = conv.taps.shape[0]
    if c != conv.channels:
        raise InputError(f"x: {c} channels; the convolution reads {conv.channels}")
    if min(h, w) <= k // 2:
        raise InputError(f"x: {w}x{h} is too small for a {k}x{k} reflection-padded convolution")
    if labels.size and int(labels.max()) >= conv.label_nc:
        raise InputError(f"labels: {int(labels.max())} is >= label_nc={conv.label_nc}")
    return x, labels


def _out(out: np.ndarray | None, shape: tuple[int, ...], dtype) -> np.ndarray:
    """`out` checked as a writable C-contiguous array of `shape` and `dtype`, or a new one."""
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        name = np.dtype(dtype).name
        raise InputError(f"out: expected a C-contiguous {name} array of shape {shape}")
    if not out.flags.writeable:
        raise InputError("out: the buffer is read-only")
    return out


def one_hot_conv(
    x: np.ndarray, labels: np.ndarray, conv: OneHotConv, out: np.ndarray | None = None
) -> np.ndarray:
    """`conv` on x float32 [B, C, H, W] whose labels (`one_hot_labels`) are `labels`: float32
    [B, Co, H, W] (in `out` where given), computed as sums of weight rows."""
    x, labels = _conv_input(x, labels, conv)
    b, _, h, w = x.shape
    out = _out(out, (b, conv.channels_out, h, w), np.float32)
    _native.one_hot_conv(x, labels, conv.label_nc, conv.taps, conv.bias, out)
    return out


@dataclass(frozen=True)
class Levels:
    """What follows a OneHotConv in an int8 graph, up to the next layer's uint8 input: instance
    normalisation (per image and channel, (y - mean) / sqrt(variance + eps), times `scale` plus
    `shift`, float32 [Co]), ReLU, and quantisation to levels of `step`: round(z / step) clamped
    to [0, 255], ties to even."""

    eps: float
    scale: np.ndarray
    shift: np.ndarray
    step: float

    def __post_init__(self):
        if not (self.eps > 0 and self.step > 0):
            raise InputError(f"levels: eps and step must be > 0, got {self.eps} and {self.step}")


def one_hot_conv_levels(
    x: np.ndarray,
    labels: np.ndarray,
    conv: OneHotConv,
    levels: Levels,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """`conv` then `levels` on x float32 [B, C, H, W] whose labels are `labels`: uint8
    [B, H, W, Co], channels last (in `out` where given). The convolution is summed twice (for
    the normalisation's moments, then for the levels), its float output never stored."""
    x, labels = _conv_input(x, labels, conv)
    b, _, h, w = x.shape
    co = conv.channels_out
    scale, shift = (np.ascontiguousarray(v, np.float32) for v in (levels.scale, levels.shift))
    if scale.shape != (co,) or shift.shape != (co,):
        raise InputError(f"levels: scale and shift must have shape ({co},)")
    out = _out(out, (b, h, w, co), np.uint8)
    _native.one_hot_conv_levels(
        x, labels, conv.label_nc, conv.taps, conv.bias, levels.eps, scale, shift, levels.step, out
    )
    return out
