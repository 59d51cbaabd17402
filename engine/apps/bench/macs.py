"""Multiply-accumulate count of an ONNX graph at a given input shape, from its own shapes.

The input is pinned to [B, C, H, W], onnx shape inference fills in every intermediate shape, and
Conv / ConvTranspose / MatMul / Gemm MACs follow from their operand and output shapes. Large
weights are dropped before inference (only their dims matter), small constants (pads, shapes)
stay, so a 700 MB generator is counted in a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from p2phd.common.errors import PackageError

COUNTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")
KEEP_INITIALIZER_ELEMENTS = 4096  # constants this small may feed shapes (Pad, Reshape)


@dataclass
class MacCount:
    """MACs of one forward pass at `input_shape`, in total and per op type."""

    input_shape: tuple[int, ...]
    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)
    nodes: int = 0

    def to_json(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "macs": self.total,
            "gmacs": round(self.total / 1e9, 3),
            "by_op": self.by_op,
            "counted_nodes": self.nodes,
        }


def _shape_graph(model, input_shape: tuple[int, ...]):
    """A copy of `model`'s graph with the first input pinned and every value's shape inferred."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    for init in m.graph.initializer:
        if math.prod(init.dims) > KEEP_INITIALIZER_ELEMENTS:
            init.ClearField("raw_data")
            init.ClearField("float_data")
            init.data_location = onnx.TensorProto.DEFAULT
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise PackageError(
            f"graph input {m.graph.input[0].name} has rank {len(dims)}, "
            f"expected {len(input_shape)} for shape {list(input_shape)}"
        )
    for d, n in zip(dims, input_shape, strict=True):
        d.Clear()
        d.dim_value = n
    return onnx.shape_inference.infer_shapes(m, data_prop=True).graph


def _shapes(graph) -> dict[str, tuple[int, ...] | None]:
    out: dict[str, tuple[int, ...] | None] = {}
    for v in [*graph.input, *graph.value_info, *graph.output]:
        dims = v.type.tensor_type.shape.dim
        known = all(d.HasField("dim_value") for d in dims)
        out[v.name] = tuple(d.dim_value for d in dims) if known else None
    for init in graph.initializer:
        out[init.name] = tuple(init.dims)
    return out


def _group(node) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def node_macs(node, shapes: dict[str, tuple[int, ...] | None]) -> int:
    """MACs of one counted node; PackageError when a shape it needs is unknown."""

    def shape(name: str) -> tuple[int, ...]:
        s = shapes.get(name)
        if s is None:
            raise PackageError(
                f"MAC count: the shape of {name!r} (into {node.op_type} "
                f"{node.name!r}) could not be inferred"
            )
        return s

    if node.op_type == "Conv":
        # every output element sums (C_in / group) x kernel products
        weight = shape(node.input[1])
        return math.prod(shape(node.output[0])) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose":
        # every input element scatters into (C_out / group) x kernel outputs
        weight = shape(node.input[1])
        return math.prod(shape(node.input[0])) * math.prod(weight[1:])
    if node.op_type == "MatMul":
        a, out = shape(node.input[0]), shape(node.output[0])
        return math.prod(out) * a[-1]
    if node.op_type == "Gemm":
        a, out = shape(node.input[0]), shape(node.output[0])
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        return math.prod(out) * (a[0] if trans_a else a[-1])
    return 0


def count_macs(onnx_path: str | Path, input_shape: tuple[int, ...]) -> MacCount:
    """MACs of the ONNX graph at `onnx_path` for one run on an input of `input_shape`."""
    import onnx

    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:  # onnx raises DecodeError, OSError, ... for a broken file
        raise PackageError(f"{onnx_path}: not a readable ONNX model ({e})") from e
    return count_model_macs(model, input_shape)


def count_model_macs(model, input_shape: tuple[int, ...]) -> MacCount:
    """MACs of an in-memory onnx.ModelProto (see count_macs)."""
    graph = _shape_graph(model, tuple(input_shape))
    shapes = _shapes(graph)
    result = MacCount(tuple(input_shape))
    for node in graph.node:
        if node.op_type not in COUNTED:
            continue
        macs = node_macs(node, shapes)
        result.total += macs
        result.by_op[node.op_type] = result.by_op.get(node.op_type, 0) + macs
        result.nodes += 1
    return result
