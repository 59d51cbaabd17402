"""Rewrites of a Q/DQ int8 graph that a runtime needs before it can read it.

TensorRT quantizes to signed int8 with zero point 0 only; NNCF gives tensors that are never
negative (after ReLU) uint8 quantizers with zero point 0, which OpenVINO and ONNX Runtime run as
they are. `signed_activations` re-expresses those for TensorRT at the cost of one bit on them,
which TensorRT's own int8 gate (`p2phd build --backend tensorrt --precision int8`) measures.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from p2phd.common.errors import PackageError


def signed_activations(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a Q/DQ model whose uint8 quantizers (unsigned tensors after ReLU, zero point 0)
    are int8 with twice the step, for TensorRT, which quantizes to signed int8 only: those
    tensors lose one bit, which its own quality gate measures."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for node in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None:
            raise PackageError(
                f"{node.name}: a QuantizeLinear without an initializer zero point; expected "
                "the Q/DQ graph p2phd build writes"
            )
        if zero.data_type != TensorProto.UINT8:
            continue
        if numpy_helper.to_array(zero).any():
            raise PackageError(f"{node.name}: an asymmetric uint8 quantizer; expected zero point 0")
        scale = numpy_helper.to_array(inits[node.input[1]]) * np.float32(255 / 127)
        names = (f"{node.output[0]}.s8_scale", f"{node.output[0]}.s8_zero_point")
        graph.initializer.extend(
            [
                numpy_helper.from_array(scale.astype(np.float32), names[0]),
                numpy_helper.from_array(np.zeros(zero.dims, np.int8), names[1]),
            ]
        )
        for q in [node, *(r for r in readers[node.output[0]] if r.op_type == "DequantizeLinear")]:
            q.input[1], q.input[2] = names
    read = {name for node in graph.node for name in node.input}
    for unused in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(unused)  # the uint8 scales and zero points replaced above
    del graph.value_info[:]  # the quantized tensors' types changed; runtimes re-infer them
    return out
