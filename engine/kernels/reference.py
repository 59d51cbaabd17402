"""Plain NumPy references of the kernels: their specification, written for clarity not speed.

The tests compare the native kernels against these; the benchmarks time them as baselines.
"""

from __future__ import annotations

import numpy as np


def compact(instances: np.ndarray, labels: np.ndarray):
    """(ids, counts, original, classes) per image, numbered by first appearance in raster order."""
    ids, originals, classes = [], [], []
    for inst, lab in zip(instances, labels, strict=True):
        uniq, first, inverse = np.unique(inst.ravel(), return_index=True, return_inverse=True)
        order = np.argsort(first)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        ids.append(rank[inverse].reshape(inst.shape).astype(np.int32))
        originals.append(uniq[order].astype(np.int64))
        classes.append(lab.ravel()[first[order]].astype(np.int64))
    kmax = max(len(o) for o in originals)
    pad = lambda rows: np.array([np.pad(r, (0, kmax - len(r)), constant_values=-1) for r in rows])  # noqa: E731
    counts = np.array([len(o) for o in originals], np.int32)
    return np.stack(ids), counts, pad(originals), pad(classes)


def boundaries(ids: np.ndarray) -> np.ndarray:
    """pix2pixHD's get_edges: 1 where the left, right, upper or lower neighbour differs."""
    edge = np.zeros(ids.shape, bool)
    horizontal = ids[:, :, 1:] != ids[:, :, :-1]
    vertical = ids[:, 1:, :] != ids[:, :-1, :]
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    return edge.astype(np.uint8)


def pool(features: np.ndarray, ids: np.ndarray, kmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-instance means (float64 sums) and the map of each pixel's instance mean."""
    b, c = features.shape[:2]
    means = np.zeros((b, kmax, c), np.float32)
    for i in range(b):
        counts = np.bincount(ids[i].ravel(), minlength=kmax)
        for j in range(c):
            sums = np.bincount(ids[i].ravel(), weights=features[i, j].ravel(), minlength=kmax)
            present = counts > 0
            means[i, present, j] = sums[present] / counts[present]
    broadcast = np.stack([means[i][ids[i]].transpose(2, 0, 1) for i in range(b)])
    return means, broadcast


def pool_per_instance_loop(features: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """pix2pixHD's Encoder.forward loop ported to NumPy, the baseline the pooling kernel replaces.

    For each unique id and image: the pixel indices (nonzero), then per channel a gather, a mean
    and a scatter of the mean back to those pixels.
    """
    out = features.copy()
    for k in np.unique(ids):
        for b in range(features.shape[0]):
            indices = np.nonzero(ids[b : b + 1, None] == k)  # n, c, y, x as in the original
            if not len(indices[0]):
                continue
            for j in range(features.shape[1]):
                where = (indices[0] + b, indices[1] + j, indices[2], indices[3])
                out[where] = features[where].mean()
    return out


def assemble(labels, ids, label_nc, edges, table, feat_channels=0) -> np.ndarray:
    """one-hot(label) ⊕ edges ⊕ table[id] in float32."""
    parts = [(labels[:, None] == np.arange(label_nc)[None, :, None, None]).astype(np.float32)]
    if edges:
        parts.append(boundaries(ids)[:, None].astype(np.float32))
    if table is not None:
        parts.append(np.stack([table[i][ids[i]].transpose(2, 0, 1) for i in range(len(ids))]))
    elif feat_channels:
        parts.append(np.zeros((labels.shape[0], feat_channels, *labels.shape[1:]), np.float32))
    return np.concatenate(parts, axis=1)


def reflect_conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A K x K convolution (K odd) of x [B,C,H,W] with reflection padding K//2, stride 1:
    what one_hot_conv computes from the labels, here by multiply-adds over every channel."""
    k = weight.shape[2]
    r = k // 2
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    h, w = x.shape[2:]
    out = np.zeros((x.shape[0], weight.shape[0], h, w)) + bias[None, :, None, None]
    for dy in range(k):
        for dx in range(k):
            window = padded[:, :, dy : dy + h, dx : dx + w]
            out += np.einsum("bchw,oc->bohw", window, weight[:, :, dy, dx].astype(np.float64))
    return out.astype(np.float32)


def norm_steps(y: np.ndarray, eps: float, scale, shift, step: float) -> np.ndarray:
    """Instance normalisation of y [B,C,H,W] (times scale plus shift per channel) and ReLU, in
    steps of `step` (float64, before rounding), channels last."""
    y = y.astype(np.float64)
    mean = y.mean(axis=(2, 3), keepdims=True)
    variance = y.var(axis=(2, 3), keepdims=True)
    z = (y - mean) / np.sqrt(variance + eps) * np.asarray(scale, np.float64)[None, :, None, None]
    z += np.asarray(shift, np.float64)[None, :, None, None]
    return (np.maximum(z, 0) / step).transpose(0, 2, 3, 1)


def norm_levels(y: np.ndarray, eps: float, scale, shift, step: float) -> np.ndarray:
    """`norm_steps` as uint8 levels, rounded (ties to even) and clamped to 255: what
    one_hot_conv_levels computes after the convolution, here from its stored output."""
    return np.clip(np.round(norm_steps(y, eps, scale, shift, step)), 0, 255).astype(np.uint8)


def to_uint8(output: np.ndarray) -> np.ndarray:
    """clamp(round_half_up((x + 1) * 127.5), 0, 255) in float32 arithmetic, NaN -> 0, to HWC."""
    x = output.astype(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        v = (x + np.float32(1)) * np.float32(127.5)
        r = np.floor(v)
        rounded = r + (v - r >= np.float32(0.5))
        out = np.where(v >= 255, 255, np.where(v > 0, rounded, 0))
    return out.astype(np.uint8).transpose(0, 2, 3, 1)
