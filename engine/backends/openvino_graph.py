"""Rewrites of an OpenVINO model, once reshaped to a static size, before it is compiled.

The generator's first convolution reads the one-hot label map: 36 input channels of which one is
1, a 7x7 kernel, at full resolution (the 512p generator at 256x512: 12% of its multiply-adds, the
largest int8 layer on Zen 4 and on AMX, whose tiles it fills a little over half, plus a layout
reorder of the wide float input). `first_conv` finds it, `probe_first_conv` reads its weights off
the compiled graph, and `cut_first_conv` makes the model start after it: the backend computes it
from the labels (p2phd.engine.kernels.one_hot_conv, a table lookup per tap) and feeds the rest.
In an int8 graph the layer after it reads its instance-normalised, ReLU'd output as uint8
levels: `probe_levels` reads that normalisation and quantisation off the graph too, and the cut
then starts at those levels (one_hot_conv_levels), channels last, where the CPU plugin's int8
convolution reads them without a reorder (the 512p generator at 256x512 on Zen 4: the input's
float32 reorder, 3-5 ms an image, and the normalisation, 1-2 ms, leave the graph).

pix2pixHD's (and CycleGAN's) last layer is a 7x7 convolution from 64 channels to the image's 3 at
full resolution: its 3 output channels fill 3 of the 16 lanes the CPU plugin computes a vector of
channels in, so it ran at ~90 GMAC/s where the residual blocks run at ~480 (2-core Zen 4, bf16),
13.5 ms of the 512p generator's 145 ms per 256x512 image in int8, where the search keeps it in
float. `space_to_depth_narrow_convs` computes such a convolution on a space-to-depth view
instead: the input's 2x2 pixel blocks become channels (SpaceToDepth), one convolution of
kernel k//2+1 makes all four output phases as 4x the channels, and DepthToSpace interleaves them
back. 1.3x the multiply-adds in 4x wider vectors, the same numbers up to summation order
(measured: the 512p generator 4-5% faster in bf16, 4-6% in int8).

An int8 graph computes each transposed convolution as four phase convolutions (export/subpixel),
each adding the same bias, concatenated and interleaved into the instance normalisation, whose
mean subtracts any constant per channel: `drop_biases` removes those adds, which the CPU plugin
ran as separate element-wise nodes (the 512p generator in int8 ~2% faster on Zen 4, exact up to
rounding).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from p2phd.engine.kernels import (
    MAX_TAPS,
    Levels,
    OneHotConv,
    one_hot_conv,
    one_hot_conv_levels,
    one_hot_labels,
)

CHANNEL_BLOCK = 16  # the CPU plugin lays out NCHW channels in blocks of 16 (AVX-512 fp32 lanes)
BLOCK = 2  # pixels per side of a space-to-depth block
PROBE_SIDE = 3 * MAX_TAPS + 2  # fits _random_input's default size for the widest kernel
REWRITES = (
    "s2d-v2-cut2-bias1"  # in the engine cache key: blobs compiled before a change are not imported
)


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


def folded(model, shape: list[int]) -> object:
    """A copy of `model` reshaped to `shape` with its constant subgraphs folded into Constants,
    to read values off (and compile small parts of: folding also turns int8 weights into the
    float values they stand for, so the whole is never what runs)."""
    import openvino as ov
    from openvino.passes import ConstantFolding, Manager

    model = model.clone()
    model.reshape({model.get_parameters()[0].output(0): ov.PartialShape(shape)})
    passes = Manager()
    passes.register_pass(ConstantFolding())
    passes.run_passes(model)
    return model


def _per_channel(value: np.ndarray, channels: int) -> np.ndarray | None:
    """`value`, added to an NCHW tensor of `channels`, as one constant per channel; None where
    it varies over height or width (or has another shape)."""
    if value.size == 1:
        return np.full(channels, value.ravel()[0])
    if value.ndim >= 3 and value.shape[-3:] == (channels, 1, 1) and value.size == channels:
        return value.ravel()
    return None


def normalised_concats(model) -> list[tuple[object, object]]:
    """(Concat, DepthToSpace) pairs of `model` where a Concat over channels is read only by a
    DepthToSpace, which is read only by an MVN over height and width (whose axes are a
    Constant: so in a model as read, before `folded`)."""
    pairs = []
    for mvn in (op for op in model.get_ordered_ops() if op.get_type_name() == "MVN"):
        axes = _value(mvn.input_value(1))
        d2s = mvn.input_value(0).get_node()
        if axes is None or sorted(axes.ravel().tolist()) != [2, 3]:
            continue
        if d2s.get_type_name() != "DepthToSpace" or _only_consumer(d2s.output(0)) is None:
            continue
        concat = d2s.input_value(0).get_node()
        if concat.get_type_name() != "Concat" or concat.get_attributes()["axis"] not in (1, -3):
            continue
        if _only_consumer(concat.output(0)) is not None:  # another reader would see a change
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
            value = _value(node.input_value(1)) if node.get_type_name() == "Add" else None
            bias = None if value is None else _per_channel(value, channels)
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


@dataclass
class NormChain:
    """What an int8 graph computes from its first convolution's output up to the next layer's
    input: instance normalisation (MVN over H and W, a per-channel Multiply and Add), ReLU, a
    FakeQuantize to levels 0..255, Convert to uint8 (`levels`), and back to float: Convert,
    Subtract of the zero point (`zero_point`, where there is one) and Multiply by the step
    (`step`), whose output (`dequantized`) that layer reads."""

    mvn: object
    scale: object  # ov.Output of per-channel values
    shift: object
    quantize: object
    levels: object  # ov.Output: uint8 levels [N, Co, H, W]
    zero_point: object | None  # ov.Output, one value
    step: object  # ov.Output, one value
    dequantized: object  # ov.Output


def _one_value(output) -> bool:
    shape = output.get_partial_shape()
    return shape.is_static and int(np.prod(list(shape.to_shape()), dtype=np.int64)) == 1


def _norm_chain(output) -> NormChain | None:
    """The NormChain after `output` (a first convolution's), each node its input's only reader
    and its other inputs constants, the zero point and step one value each; None for any other
    graph."""
    import openvino as ov

    nodes = []
    for kind in ("MVN", "Multiply", "Add", "Relu", "FakeQuantize", "Convert", "Convert",
                 "Subtract", "Multiply"):  # fmt: skip
        target = _only_consumer(output)
        node = None if target is None else target.get_node()
        if kind == "Subtract" and node is not None and node.get_type_name() == "Multiply":
            nodes.append(None)  # no zero point
            continue
        if node is None or node.get_type_name() != kind or target.get_index() != 0:
            return None
        if not all(_from_constants(i.get_source_output()) for i in node.inputs()[1:]):
            return None
        nodes.append(node)
        output = node.output(0)
    mvn, scale, shift, _, quantize, to_levels, _, zero, step = nodes
    attrs = mvn.get_attributes()
    if not attrs["normalize_variance"] or attrs["eps_mode"].upper() != "INSIDE_SQRT":
        return None
    if quantize.get_attributes()["levels"] != 256:
        return None
    if to_levels.get_output_element_type(0) != ov.Type.u8:
        return None
    scalars = [step.input_value(1)] + ([] if zero is None else [zero.input_value(1)])
    if not all(_one_value(o) for o in scalars):
        return None
    return NormChain(mvn, scale.input_value(1), shift.input_value(1), quantize,
                     to_levels.output(0), None if zero is None else zero.input_value(1),
                     step.input_value(1), output)  # fmt: skip


def has_norm_chain(model) -> bool:
    """Whether `model`'s first convolution (`first_conv`) is followed by a `NormChain`: read off
    the graph's structure, before `probe_levels` needs its values."""
    found = first_conv(model)
    return found is not None and _norm_chain(found.output) is not None


def _value(output) -> np.ndarray | None:
    """The value of `output` where its node is a Constant (after constant folding), else None."""
    node = output.get_node()
    return node.get_data() if node.get_type_name() == "Constant" else None


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


def probe_shape(channels: int, multiple: int) -> list[int]:
    """The input shape `folded` copies are made at for reading constants and probing: 2 images
    of PROBE_SIDE rounded up to the size multiple, room for the widest kernel's borders."""
    side = -(-PROBE_SIDE // multiple) * multiple
    return [2, channels, side, side]


def _random_input(conv: OneHotConv, height: int = 0, width: int = 0) -> np.ndarray:
    """A label map's input x [2, C, H, W] (by default just large enough for the kernel's
    borders and interior): random labels in runs of two, 0/1 dense channels (edges; features
    are continuous, and computed unquantized by the lookup)."""
    rng = np.random.default_rng(0)
    c, k, label_nc = conv.channels, conv.taps.shape[0], conv.label_nc
    h, w = height or 2 * k + 3, width or 3 * k + 2
    labels = np.repeat(rng.integers(0, label_nc, (2, h, w // 2 + 1)), 2, axis=2)[:, :, :w]
    x = (labels[:, None] == np.arange(c)[None, :, None, None]).astype(np.float32)
    x[:, label_nc:] = rng.integers(0, 2, (2, c - label_nc, h, w))
    return x


def _agrees(compiled, conv: OneHotConv, label_nc: int) -> bool:
    """Whether the lookup matches the compiled first convolution on `_random_input`."""
    x = _random_input(conv)
    graph = compiled.create_infer_request().infer({0: x})[0]
    lookup = one_hot_conv(x, one_hot_labels(x, label_nc), conv)
    return bool(np.allclose(lookup, graph, rtol=1e-4, atol=1e-4 * float(np.abs(graph).max())))


def probe_levels(core, model, conv: OneHotConv) -> Levels | None:
    """The normalisation and quantisation an int8 graph applies to its first convolution's
    output (`NormChain`), read off `model` as `folded` returns it at `probe_shape`; None where
    there is none, or where one_hot_conv_levels then disagrees with the compiled graph on a
    random label map by more than one level anywhere (float sums in another order round a
    level apart)."""
    import openvino as ov

    x = _random_input(conv, *list(model.get_parameters()[0].get_shape())[2:])
    found = first_conv(model)
    chain = None if found is None else _norm_chain(found.output)
    if chain is None:
        return None
    axes, scale, shift = (_value(o) for o in (chain.mvn.input_value(1), chain.scale, chain.shift))
    zero = np.zeros(1) if chain.zero_point is None else _value(chain.zero_point)
    bounds = [_value(chain.quantize.input_value(i)) for i in range(1, 5)]
    if any(v is None for v in [axes, scale, shift, zero, *bounds]):
        return None
    low, high, out_low, out_high = (float(v.ravel()[0]) if v.size == 1 else None for v in bounds)
    if sorted(axes.ravel().tolist()) != [2, 3] or zero.any():
        return None
    if not (low == out_low == 0 and out_high == 255 and high is not None and high > 0):
        return None
    scale, shift = (_per_channel(v, conv.channels_out) for v in (scale, shift))
    if scale is None or shift is None:
        return None
    levels = Levels(float(chain.mvn.get_attributes()["eps"]), scale, shift, high / 255)
    prefix = ov.Model([chain.levels.get_node()], model.get_parameters())
    compiled = core.compile_model(prefix, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    graph = compiled.create_infer_request().infer({0: x})[0].astype(np.int32)
    mine = one_hot_conv_levels(x, one_hot_labels(x, conv.label_nc), conv, levels)
    return levels if np.abs(mine.transpose(0, 3, 1, 2) - graph).max() <= 1 else None


def cut_first_conv(model, levels: bool = False) -> object:
    """`model` (reshaped) starting after its first convolution (`first_conv`): a model whose
    first input is that convolution's output [N, Co, H, W], as one_hot_conv writes it (planar:
    the CPU plugin's instance normalisation reads it without a reorder, unlike channels last),
    and whose second is the original input where other layers read it too. With `levels`, it
    starts after the NormChain instead: the first input is its uint8 levels [N, H, W, Co], as
    one_hot_conv_levels writes them, dequantized and transposed (which the plugin folds into
    its int8 convolution's channels-last input)."""
    import openvino as ov
    import openvino.opset13 as ops

    found = first_conv(model)
    output = found.output
    if levels:
        chain = _norm_chain(output)
        n, c, h, w = output.get_partial_shape()
        first = ops.parameter([n, h, w, c], np.uint8, name="first_conv")
        value = ops.convert(first, chain.dequantized.get_element_type())
        if chain.zero_point is not None:
            value = ops.subtract(value, chain.zero_point)
        value = ops.multiply(value, chain.step)
        value = ops.transpose(value, ops.constant(np.array([0, 3, 1, 2], np.int64)))
        output = chain.dequantized
    else:
        first = value = ops.parameter(output.get_partial_shape(), np.float32, name="first_conv")
    for target in list(output.get_target_inputs()):
        target.replace_source_output(value.output(0))
    original = model.get_parameters()[0]
    read = original.get_friendly_name() in _ancestors(model.outputs, stop=())
    return ov.Model(model.get_results(), [first, original] if read else [first])
