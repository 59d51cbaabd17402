"""Rewrites of an OpenVINO model, once reshaped to a static size, before it is compiled.

The generator's first convolution reads the one-hot label map: 36 input channels of which one is
1, a 7x7 kernel, at full resolution (the 512p generator at 256x512: 12% of its multiply-adds, the
largest int8 layer on Zen 4 and on AMX, whose tiles it fills a little over half, plus a layout
reorder of the wide float input). `first_conv` finds it, `probe_first_conv` reads its weights off
the compiled graph, and `cut_first_conv` makes the model start after it: the backend computes it
from the labels (p2phd.engine.kernels.one_hot_conv, a table lookup per tap) and feeds the rest.

pix2pixHD's (and CycleGAN's) last layer is a 7x7 convolution from 64 channels to the image's 3 at
full resolution: its 3 output channels fill 3 of the 16 lanes the CPU plugin computes a vector of
channels in, so it ran at ~90 GMAC/s where the residual blocks run at ~480 (2-core Zen 4, bf16),
13.5 ms of the 512p generator's 145 ms per 256x512 image in int8, where the search keeps it in
float. `space_to_depth_narrow_convs` computes such a convolution on a space-to-depth view
instead: the input's 2x2 pixel blocks become channels (SpaceToDepth), one convolution of
kernel k//2+1 makes all four output phases as 4x the channels, and DepthToSpace interleaves them
back. 1.3x the multiply-adds in 4x wider vectors, the same numbers up to summation order
(measured: the 512p generator 4-5% faster in bf16, 4-6% in int8).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from p2phd.engine.kernels import OneHotConv, one_hot_conv, one_hot_labels

CHANNEL_BLOCK = 16  # the CPU plugin lays out NCHW channels in blocks of 16 (AVX-512 fp32 lanes)
BLOCK = 2  # pixels per side of a space-to-depth block
REWRITES = "s2d-v2-cut1"  # in the engine cache key: blobs compiled before a change are not imported


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
    SpaceToDepth, a convolution over the blocks and DepthToSpace, in place; returns how many."""
    import openvino.opset13 as ops

    narrow = [op for op in model.get_ordered_ops() if _narrow(op)]
    for op in narrow:
        blocks = ops.space_to_depth(op.input_value(0), "blocks_first", BLOCK)
        weight = phase_weights(op.input_value(1).get_node().get_data())
        conv = ops.convolution(blocks, ops.constant(weight), [1, 1], [0, 0], [0, 0], [1, 1])
        op.output(0).replace(ops.depth_to_space(conv, "blocks_first", BLOCK).output(0))
    return len(narrow)


# Element-wise ops a quantized graph puts between its input and the first convolution (ONNX
# QuantizeLinear/DequantizeLinear as OpenVINO reads them), each with constant other inputs.
_QUANTIZATION = {"FakeQuantize", "Convert", "Subtract", "Multiply"}


@dataclass
class FirstConv:
    """The first convolution of a model: its output (bias included) and kernel size."""

    output: object  # ov.Output: the convolution's, or its bias Add's
    kernel: int


def _ancestors(outputs, stop=("ShapeOf",)) -> dict[str, object]:
    """The nodes `outputs` are computed from, by friendly name, each visited once; the inputs of
    `stop` types are not followed (a ShapeOf reads only its input's shape)."""
    seen, todo = {}, [o.get_node() for o in outputs]
    while todo:
        node = todo.pop()
        name = node.get_friendly_name()
        if name in seen:
            continue
        seen[name] = node
        if node.get_type_name() not in stop:
            todo.extend(i.get_source_output().get_node() for i in node.inputs())
    return seen


def _from_constants(output) -> bool:
    """Whether `output` is computed from constants and shapes alone (a quantized weight and its
    scale; a bias reshaped to the activation's rank by way of its ShapeOf)."""
    return all(n.get_type_name() != "Parameter" for n in _ancestors([output]).values())


def _only_consumer(output):
    """The one input `output`'s values feed (ShapeOf reads only its shape), or None when they
    feed none or several."""
    targets = [t for t in output.get_target_inputs() if t.get_node().get_type_name() != "ShapeOf"]
    return targets[0] if len(targets) == 1 else None


def _reflect_pad(pad) -> int | None:
    """R where `pad` reflection-pads the last two axes by R on every side (R > 0), else None."""
    if pad.get_attributes().get("pad_mode") != "reflect":
        return None
    ends = [pad.input_value(i).get_node() for i in (1, 2)]
    if any(e.get_type_name() != "Constant" for e in ends):
        return None
    begin, end = (list(e.get_data().ravel()) for e in ends)
    if begin != end or len(begin) != 4 or begin[:2] != [0, 0] or begin[2] != begin[3]:
        return None
    return int(begin[2]) or None


def first_conv(model) -> FirstConv | None:
    """The convolution the model's one input reaches through a reflection Pad and quantization
    ops only (K x K, K odd, padded by K//2: output the input's size; stride and dilation 1), as
    pix2pixHD's and CycleGAN's first layer; None for any other graph. The input may also feed
    other layers (a tail that reads the instance features)."""
    if len(model.get_parameters()) != 1:
        return None
    pads = [
        t for t in model.get_parameters()[0].output(0).get_target_inputs()
        if t.get_node().get_type_name() == "Pad" and t.get_index() == 0
    ]  # fmt: skip
    if len(pads) != 1:
        return None
    radius = _reflect_pad(pads[0].get_node())
    output = pads[0].get_node().output(0)
    while radius is not None and (target := _only_consumer(output)) is not None:
        node = target.get_node()
        index = target.get_index()
        others = [i.get_source_output() for i in node.inputs() if i.get_index() != index]
        kind = node.get_type_name()
        if kind == "Convolution" and index == 0:
            return _biased(node, radius)
        if kind not in _QUANTIZATION or not all(_from_constants(o) for o in others):
            return None
        output = node.output(0)
    return None


def _biased(conv, radius: int) -> FirstConv | None:
    attrs = conv.get_attributes()
    shape = conv.input(1).get_partial_shape()
    if not shape.is_static or not _from_constants(conv.input_value(1)):
        return None
    kernel = list(shape.to_shape())[2:]
    plain = (
        list(attrs["strides"]) == [1, 1] == list(attrs["dilations"])
        and list(attrs["pads_begin"]) == [0, 0] == list(attrs["pads_end"])
        and kernel == [2 * radius + 1] * 2
    )
    if not plain:
        return None
    output = conv.output(0)
    target = _only_consumer(output)
    if target is not None and target.get_node().get_type_name() == "Add":
        add = target.get_node()
        if _from_constants(add.input_value(1 - target.get_index())):
            output = add.output(0)
    return FirstConv(output, kernel[0])


def probe_first_conv(core, model, label_nc: int) -> OneHotConv | None:
    """The first convolution of `model` (`first_conv`) as the compiled graph computes it on 0/1
    inputs (its input quantization included), read off its responses to single 1s; None where
    there is none, or where the lookup then disagrees with the graph on a random label map."""
    import openvino as ov

    model = model.clone()
    found = first_conv(model)
    channels = model.get_parameters()[0].get_partial_shape()[1]
    if found is None or not channels.is_static or channels.get_length() < label_nc:
        return None
    c, k = channels.get_length(), found.kernel
    prefix = ov.Model([found.output.get_node()], model.get_parameters())
    if prefix.get_output_size() != 1 or not prefix.output(0).get_partial_shape()[1].is_static:
        return None
    compiled = core.compile_model(prefix, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    side = 2 * k + 1  # an impulse at the centre stays clear of the reflected border
    impulses = np.zeros((c + 1, c, side, side), np.float32)
    impulses[np.arange(c), np.arange(c), k, k] = 1.0
    out = compiled.create_infer_request().infer({0: impulses})[0]
    base = out[c]  # all zeros: bias (and what the input quantization makes of a 0) everywhere
    window = slice(k - k // 2, k + k // 2 + 1)
    # output (k + R - dy, k + R - dx) of impulse c is weight[:, c, dy, dx]
    weight = (out[:c] - base)[:, :, window, window][:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
    try:
        conv = OneHotConv.from_weights(weight, base[:, k, k], label_nc)
    except ValueError:
        return None
    return conv if _agrees(compiled, conv, label_nc) else None


def _agrees(compiled, conv: OneHotConv, label_nc: int) -> bool:
    """Whether the lookup matches the compiled first convolution on random labels and 0/1 dense
    channels (edges; features are continuous, and computed unquantized by the lookup)."""
    rng = np.random.default_rng(0)
    c, k = conv.channels, conv.taps.shape[0]
    h, w = 2 * k + 3, 3 * k + 2
    labels = np.repeat(rng.integers(0, label_nc, (2, h, w // 2 + 1)), 2, axis=2)[:, :, :w]
    x = (labels[:, None] == np.arange(c)[None, :, None, None]).astype(np.float32)
    x[:, label_nc:] = rng.integers(0, 2, (2, c - label_nc, h, w))
    graph = compiled.create_infer_request().infer({0: x})[0]
    lookup = one_hot_conv(x, one_hot_labels(x, label_nc), conv)
    return bool(np.allclose(lookup, graph, rtol=1e-4, atol=1e-4 * float(np.abs(graph).max())))


def cut_first_conv(model) -> object:
    """`model` (reshaped) starting after its first convolution (`first_conv`): a model whose
    first input is that convolution's output [N, Co, H, W], as one_hot_conv writes it (planar:
    the CPU plugin's instance normalisation reads it without a reorder, unlike channels last),
    and whose second is the original input where other layers read it too."""
    import openvino as ov
    import openvino.opset13 as ops

    found = first_conv(model)
    first = ops.parameter(found.output.get_partial_shape(), np.float32, name="first_conv")
    for target in list(found.output.get_target_inputs()):
        target.replace_source_output(first.output(0))
    original = model.get_parameters()[0]
    read = original.get_friendly_name() in _ancestors(model.outputs, stop=())
    return ov.Model(model.get_results(), [first, original] if read else [first])
