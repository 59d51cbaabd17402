"""The FP16 variant of an exported network, for TensorRT's strongly typed mode.

Strongly typed networks take every tensor's type from the ONNX graph, so the precision decision
lives here: weights and convolutions in fp16; InstanceNormalization (whose mean/variance over a
whole feature map overflows or loses precision in fp16) and the final tanh in fp32, with explicit
Casts around them. The graph's input and output stay float32, so callers feed it like the fp32
model. Initializer names are unchanged (still the state_dict keys).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

KEEP_FP32 = ("InstanceNormalization", "Tanh")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return an fp16 copy of `model` (float32 in, float32 out); `model` is not changed."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    fp32_params = {
        name for node in graph.node if node.op_type in KEEP_FP32 for name in node.input[1:] if name
    }
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT and init.name not in fp32_params:
            half = numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name
            )
            graph.initializer[i].CopyFrom(half)

    outputs = {o.name for o in graph.output}
    nodes: list[onnx.NodeProto] = []
    renamed: dict[str, str] = {}
    as_fp32: dict[str, str] = {}  # tensor -> its one fp32 Cast, however many nodes read it
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            renamed[inp.name] = f"{inp.name}__fp16"
            nodes.append(_cast(inp.name, renamed[inp.name], TensorProto.FLOAT16))
    for node in graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = renamed.get(name, name)
        if node.op_type not in KEEP_FP32:
            nodes.append(node)
            for k, y in enumerate(node.output):
                if y in outputs:  # an fp16 result that leaves the graph: hand it out as float32
                    node.output[k] = f"{y}__fp16"
                    nodes.append(_cast(node.output[k], y, TensorProto.FLOAT))
            continue
        x = node.input[0]
        if x not in as_fp32:
            as_fp32[x] = f"{x}__fp32"
            nodes.append(_cast(x, as_fp32[x], TensorProto.FLOAT))
        node.input[0] = as_fp32[x]
        nodes.append(node)
        y = node.output[0]
        if y not in outputs:
            node.output[0] = f"{y}__fp32"
            nodes.append(_cast(node.output[0], y, TensorProto.FLOAT16))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return out


def _cast(src: str, dst: str, to: int) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], to=to, name=f"cast_{dst}")
