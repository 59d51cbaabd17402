"""Rewrites of an OpenVINO model, once reshaped to a static size, before it is compiled: two
that compute the same numbers in layers the CPU plugin runs faster.

pix2pixHD's (and CycleGAN's) last layer is a 7x7 convolution from 64 channels to the image's 3 at
full resolution: its 3 output channels fill 3 of the 16 lanes the CPU plugin computes a vector of
channels in, so it ran at ~90 GMAC/s where the residual blocks run at ~480 (2-core Zen 4, bf16),
13.5 ms of the 512p generator's 145 ms per 256x512 image in int8, where the search keeps it in
float. `space_to_depth_narrow_convs` computes such a convolution on a space-to-depth view
instead: the input's 2x2 pixel blocks become channels (SpaceToDepth), one convolution of
kernel k//2+1 makes all four output phases as 4x the channels, and DepthToSpace interleaves them
back. 1.3x the multiply-adds in 4x wider vectors, the same numbers up to summation order
(measured: the 512p generator 4-5% faster in bf16, 4-6% in int8). Its bias and tanh run on the
phases before the interleave, fused into that convolution (`_before_interleave`).

An int8 graph computes each transposed convolution as four phase convolutions (export/subpixel),
each adding the same bias, concatenated and interleaved into the instance normalisation, whose
mean subtracts any constant per channel: `drop_biases` removes those adds, which the CPU plugin
ran as separate element-wise nodes (the 512p generator in int8 ~2% faster on Zen 4, exact up to
rounding).
"""

from __future__ import annotations

import itertools

import numpy as np

from p2phd.engine.backends.openvino_graph import (
    CHANNEL_BLOCK,
    constant_value,
    only_consumer,
    per_channel,
)

BLOCK = 2  # pixels per side of a space-to-depth block


def phase_weights(weight: np.ndarray) -> np.ndarray:
    """Convolution weights [Co, Ci, k, k] (k odd, stride 1) -> the space-to-depth convolution's
    [4Co, 4Ci, K, K], K = k//2 + 1: output phase (a, b) at block (y, x) reads input phase (r, s)
    of block (y+q, x+p) with tap (2q+r-a, 2p+s-b), where that lies in the kernel. Channels in
    SpaceToDepth's and DepthToSpace's "blocks_first" order (ONNX DCR): row phase, column phase,
    channel."""
    co, ci, k, _ = weight.shape
    taps = k // 2 + 1
    out = np.zeros((BLOCK * BLOCK * co, BLOCK * BLOCK * ci, taps, taps), weight.dtype)
    for a, b, r, s in itertools.product(range(BLOCK), repeat=4):
        rows = slice((a * BLOCK + b) * co, (a * BLOCK + b + 1) * co)
        cols = slice((r * BLOCK + s) * ci, (r * BLOCK + s + 1) * ci)
        for q, p in itertools.product(range(taps), repeat=2):
            i, j = BLOCK * q + r - a, BLOCK * p + s - b
            if 0 <= i < k and 0 <= j < k:
                out[rows, cols, q, p] = weight[:, :, i, j]
    return out


def _narrow(op) -> bool:
    """A Convolution this module rewrites: constant weights, odd square kernel, stride and
    dilation 1, no padding, few output channels, and an input of known, even height and width."""
    if op.get_type_name() != "Convolution":
        return False
    weight = op.input_value(1).get_node()
    spatial = list(op.input(0).get_partial_shape())[2:]  # the batch may be dynamic
    if weight.get_type_name() != "Constant" or not all(d.is_static for d in spatial):
        return False
    co, _, kh, kw = weight.get_output_shape(0)
    attrs = op.get_attributes()
    return (
        BLOCK * BLOCK * co <= CHANNEL_BLOCK
        and kh == kw
        and kh % 2 == 1
        and list(attrs["strides"]) == [1, 1]
        and list(attrs["dilations"]) == [1, 1]
        and list(attrs["pads_begin"]) == [0, 0] == list(attrs["pads_end"])
        and all(d.get_length() % BLOCK == 0 for d in spatial)
    )


def space_to_depth_narrow_convs(model) -> int:
    """Rewrite every narrow convolution of `model` (an ov.Model reshaped to its height and width) as
    SpaceToDepth, a convolution over the blocks and DepthToSpace, in place (with the bias and
    tanh after it, `_before_interleave`); returns how many."""
    import openvino.opset13 as ops

    narrow = [op for op in model.get_ordered_ops() if _narrow(op)]
    for op in narrow:
        blocks = ops.space_to_depth(op.input_value(0), "blocks_first", BLOCK)
        weight = phase_weights(op.input_value(1).get_node().get_data())
        conv = ops.convolution(blocks, ops.constant(weight), [1, 1], [0, 0], [0, 0], [1, 1])
        phases, last = _before_interleave(conv.output(0), op.output(0))
        last.replace(ops.depth_to_space(phases, "blocks_first", BLOCK).output(0))
    return len(narrow)


def _before_interleave(phases, output) -> tuple[object, object]:
    """The per-channel bias Add and then the Tanh that read a narrow convolution's `output`,
    each its input's only reader (pix2pixHD's and CycleGAN's last layer), computed on `phases`
    (the convolution over blocks, before DepthToSpace) instead: the same numbers, element-wise
    ops commute with the interleave, the bias repeated per phase. The CPU plugin fuses them
    into that convolution, where after the interleave it ran them as a separate node on the
    3-channel image, channels last, ~1 ms an image at 256x512 (a tenth of that planar).
    Returns the phases' new output and the output whose readers the interleave now feeds."""
    import openvino.opset13 as ops

    co = output.get_partial_shape()[1].get_length()
    target = only_consumer(output)
    if target is not None and target.get_node().get_type_name() == "Add":
        add = target.get_node()
        bias = _bias(add.input_value(1 - target.get_index()), co)
        if bias is not None:
            repeated = ops.constant(np.tile(bias, (1, BLOCK * BLOCK, 1, 1)))
            phases, output = ops.add(phases, repeated).output(0), add.output(0)
            target = only_consumer(output)
    if target is not None and target.get_node().get_type_name() == "Tanh":
        phases, output = ops.tanh(phases).output(0), target.get_node().output(0)
    return phases, output


def _bias(output, channels: int) -> np.ndarray | None:
    """A convolution's bias [1, C, 1, 1] as OpenVINO reads it from ONNX (a Constant, or a
    Constant of C values reshaped to that shape, its target shape by way of a ShapeOf of the
    convolution's output: read off the Constant, so that nothing new reads that output)."""
    shape = output.get_partial_shape()
    if not shape.is_static or list(shape.to_shape()) != [1, channels, 1, 1]:
        return None
    node = output.get_node()
    if node.get_type_name() in ("Reshape", "Unsqueeze"):
        node = node.input_value(0).get_node()
    value = constant_value(node.output(0))
    if value is None or value.size != channels:
        return None
    return value.reshape(shape.to_shape()).astype(output.get_element_type().to_dtype())


def normalised_concats(model) -> list[tuple[object, object]]:
    """(Concat, DepthToSpace) pairs of `model` where a Concat over channels is read only by a
    DepthToSpace, which is read only by an MVN over height and width (whose axes are a
    Constant: so in a model as read, before `folded`)."""
    pairs = []
    for mvn in (op for op in model.get_ordered_ops() if op.get_type_name() == "MVN"):
        axes = constant_value(mvn.input_value(1))
        d2s = mvn.input_value(0).get_node()
        if axes is None or sorted(axes.ravel().tolist()) != [2, 3]:
            continue
        if d2s.get_type_name() != "DepthToSpace" or only_consumer(d2s.output(0)) is None:
            continue
        concat = d2s.input_value(0).get_node()
        if concat.get_type_name() != "Concat" or concat.get_attributes()["axis"] not in (1, -3):
            continue
        if only_consumer(concat.output(0)) is not None:  # another reader would see a change
            pairs.append((concat, d2s))
    return pairs


def droppable_biases(model) -> set[str]:
    """The friendly names of the Adds of a constant per channel that feed a `normalised_concats`
    Concat where after the interleave each channel gets the same constant at every position (so
    the MVN's mean subtracts it): in `model` as `folded` returns it."""
    names: set[str] = set()
    for concat, d2s in normalised_concats(model):
        adds, biases = [], []
        for source in (i.get_source_output() for i in concat.inputs()):
            channels = source.get_partial_shape()[1].get_length()
            node = source.get_node()
            value = constant_value(node.input_value(1)) if node.get_type_name() == "Add" else None
            bias = None if value is None else per_channel(value, channels)
            if bias is not None:
                adds.append(node.get_friendly_name())
            biases.append(np.zeros(channels) if bias is None else bias)
        attrs = d2s.get_attributes()
        blocks = attrs["block_size"] ** 2
        bias = np.concatenate(biases)  # input channel (phase, c) "blocks_first", else (c, phase)
        first = attrs["mode"] == "blocks_first"
        by_phase = bias.reshape(blocks, -1) if first else bias.reshape(-1, blocks).T
        if adds and np.all(by_phase == by_phase[:1]):
            names.update(adds)
    return names


def drop_biases(model, names: set[str]) -> int:
    """Bypass, in `model`, the Adds named (`droppable_biases`) where they feed a Concat; returns
    how many inputs were rewired."""
    dropped = 0
    for concat in (op for op in model.get_ordered_ops() if op.get_type_name() == "Concat"):
        for target in concat.inputs():
            add = target.get_source_output().get_node()
            if add.get_type_name() == "Add" and add.get_friendly_name() in names:
                target.replace_source_output(add.input_value(0))
                dropped += 1
    return dropped
