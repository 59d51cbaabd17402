"""A convolution over a concatenation as the sum of one convolution per concatenated input.

conv(concat(a, b)) = conv_a(a) + conv_b(b), each with its slice of the weights (the bias once);
a reflection or constant Pad between the Concat and the Conv is applied to each input alike. The
int8 graph uses this: a quantizer sits on a convolution's input, and one quantizer over inputs of
different ranges (the tail skip's network features beside the raw instance features and photo)
resolves the narrow one badly; split, each input gets its own. Exact up to float summation order.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper, shape_inference

from p2phd.export.graph_edit import attributes, copy_of, set_nodes


def _channels(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> its static channel count (dimension 1), where shape inference knows it
    (nothing for a model shape inference cannot take whole, such as one over 2 GB)."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except ValueError:
        return {}
    found = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) > 1 and dims[1].HasField("dim_value"):
            found[info.name] = dims[1].dim_value
    return found


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every Conv (constant weights) whose input is a Concat over
    channels, directly or through one Pad, used by nothing else, split into one Conv per
    concatenated input and their sum."""
    copy = copy_of(model)
    graph = copy.graph
    weights = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    uses: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            uses[name] = uses.get(name, 0) + 1
    channels = _channels(copy)

    def only_use(name: str, op: str) -> onnx.NodeProto | None:
        node = producer.get(name)
        return node if node is not None and node.op_type == op and uses[name] == 1 else None

    replaced: dict[int, list[onnx.NodeProto]] = {}
    for conv in graph.node:
        if conv.op_type != "Conv" or conv.input[1] not in weights:
            continue
        pad = only_use(conv.input[0], "Pad")
        concat = only_use(pad.input[0] if pad is not None else conv.input[0], "Concat")
        if concat is None or attributes(concat).get("axis") not in (1, -3):
            continue
        sizes = [channels.get(name) for name in concat.input]
        weight = numpy_helper.to_array(weights[conv.input[1]])
        if None in sizes or sum(sizes) != weight.shape[1] or attributes(conv).get("group", 1) != 1:
            continue
        nodes, parts, start = [], [], 0
        for k, (source, size) in enumerate(zip(concat.input, sizes, strict=True)):
            name = f"{conv.name}/input{k}"
            part = numpy_helper.from_array(weight[:, start : start + size].copy(), f"{name}.weight")
            graph.initializer.append(part)
            start += size
            if pad is not None:
                padded = f"{name}/padded"
                nodes.append(helper.make_node("Pad", [source, *pad.input[1:]], [padded],
                                              name=f"{name}/pad", **attributes(pad)))  # fmt: skip
                source = padded
            bias = list(conv.input[2:3]) if k == 0 else []
            parts.append(f"{name}/out")
            nodes.append(helper.make_node("Conv", [source, part.name, *bias], [parts[-1]],
                                          name=name, **attributes(conv)))  # fmt: skip
        total = parts[0]
        for k, part in enumerate(parts[1:], 1):
            out = conv.output[0] if k == len(parts) - 1 else f"{conv.name}/sum{k}"
            nodes.append(helper.make_node("Add", [total, part], [out], name=f"{conv.name}/sum{k}"))
            total = out
        replaced[id(conv)] = nodes
        replaced[id(concat)] = []
        if pad is not None:
            replaced[id(pad)] = []
    set_nodes(graph, [m for n in graph.node for m in replaced.get(id(n), [n])])
    return copy
