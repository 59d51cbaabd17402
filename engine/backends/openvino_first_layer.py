"""The generator's first layer computed from the labels: finding it in an OpenVINO model, reading
it off the compiled graph (in an int8 graph with the normalisation after it), and cutting the
model to start after it.

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
float32 reorder, 3-5 ms an image, and the normalisation, 1-2 ms, leave the graph). Where later
layers read the input too through channel slices (the default model's tail, its instance
features), `narrow_dense_input` gives the cut model only those channels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from p2phd.engine.backends.openvino_graph import (
    ancestors,
    constant_value,
    from_constants,
    only_consumer,
    per_channel,
)
from p2phd.engine.kernels import (
    MAX_TAPS,
    Levels,
    OneHotConv,
    one_hot_conv,
    one_hot_conv_levels,
    one_hot_labels,
)

PROBE_SIDE = 3 * MAX_TAPS + 2  # fits _random_input's default size for the widest kernel

# Element-wise ops a quantized graph puts between its input and the first convolution (ONNX
# QuantizeLinear/DequantizeLinear as OpenVINO reads them), each with constant other inputs.
_QUANTIZATION = {"FakeQuantize", "Convert", "Subtract", "Multiply"}


@dataclass
class FirstConv:
    """The first convolution of a model: its output (bias included) and kernel size."""

    output: object  # ov.Output: the convolution's, or its bias Add's
    kernel: int


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
    while radius is not None and (target := only_consumer(output)) is not None:
        node = target.get_node()
        index = target.get_index()
        others = [i.get_source_output() for i in node.inputs() if i.get_index() != index]
        kind = node.get_type_name()
        if kind == "Convolution" and index == 0:
            return _biased(node, radius)
        if kind not in _QUANTIZATION or not all(from_constants(o) for o in others):
            return None
        output = node.output(0)
    return None


def _biased(conv, radius: int) -> FirstConv | None:
    attrs = conv.get_attributes()
    shape = conv.input(1).get_partial_shape()
    if not shape.is_static or not from_constants(conv.input_value(1)):
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
    target = only_consumer(output)
    if target is not None and target.get_node().get_type_name() == "Add":
        add = target.get_node()
        if from_constants(add.input_value(1 - target.get_index())):
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
        target = only_consumer(output)
        node = None if target is None else target.get_node()
        if kind == "Subtract" and node is not None and node.get_type_name() == "Multiply":
            nodes.append(None)  # no zero point
            continue
        if node is None or node.get_type_name() != kind or target.get_index() != 0:
            return None
        if not all(from_constants(i.get_source_output()) for i in node.inputs()[1:]):
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
    axes, scale, shift = (
        constant_value(o) for o in (chain.mvn.input_value(1), chain.scale, chain.shift)
    )
    zero = np.zeros(1) if chain.zero_point is None else constant_value(chain.zero_point)
    bounds = [constant_value(chain.quantize.input_value(i)) for i in range(1, 5)]
    if any(v is None for v in [axes, scale, shift, zero, *bounds]):
        return None
    low, high, out_low, out_high = (float(v.ravel()[0]) if v.size == 1 else None for v in bounds)
    if sorted(axes.ravel().tolist()) != [2, 3] or zero.any():
        return None
    if not (low == out_low == 0 and out_high == 255 and high is not None and high > 0):
        return None
    scale, shift = (per_channel(v, conv.channels_out) for v in (scale, shift))
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
    read = original.get_friendly_name() in ancestors(model.outputs, stop=())
    return ov.Model(model.get_results(), [first, original] if read else [first])


def _channels_sliced(target, whole: range) -> range | None:
    """The channels of `whole` that `target`'s node takes where it is a Slice over the channel
    axis alone with step 1 and constant bounds (as ONNX exports `x[:, a:b]`), else None."""
    node = target.get_node()
    if node.get_type_name() != "Slice" or target.get_index() != 0:
        return None
    values = [constant_value(i.get_source_output()) for i in node.inputs()[1:]]
    if len(values) != 4 or any(v is None or v.size != 1 for v in values):
        return None  # no axes input means all axes from 0: not the channels alone
    start, stop, step, axis = (int(v.ravel()[0]) for v in values)
    if axis not in (1, -3) or step != 1:
        return None
    channels = whole[slice(start, stop)]
    return channels if len(channels) else None


def narrow_dense_input(model) -> tuple[object, range | None]:
    """`model` as `cut_first_conv` returns it, with its second input, the dense input [N, C, H,
    W] that layers after the cut read, narrowed to the channels they take where each takes them
    through a Slice over channels (the default model's tail reads the instance features so: its
    3 of 39 channels, not all of them the CPU plugin would reorder). Returns the model and the
    dense input's channels its second input takes: all of them where the readers are other ops,
    None where it has no second input."""
    import openvino as ov
    import openvino.opset13 as ops

    params = model.get_parameters()
    if len(params) < 2:
        return model, None
    dense = params[1]
    n, c, h, w = dense.get_partial_shape()
    whole = range(c.get_length())
    live = ancestors(model.outputs, stop=())
    readers = [
        t for t in dense.output(0).get_target_inputs()
        if t.get_node().get_friendly_name() in live
    ]  # fmt: skip
    taken = [_channels_sliced(t, whole) for t in readers]
    if not taken or None in taken:
        return model, whole
    channels = range(min(r.start for r in taken), max(r.stop for r in taken))
    if channels == whole:
        return model, whole
    narrow = ops.parameter([n, len(channels), h, w], dense.get_element_type(), name="dense")
    for target, r in zip(readers, taken, strict=True):
        begin, end = r.start - channels.start, r.stop - channels.start
        value = narrow if r == channels else ops.slice(narrow, [begin], [end], [1], [1])
        target.get_node().output(0).replace(value.output(0))
    return ov.Model(model.get_results(), [params[0], narrow]), channels
