"""Transposed convolutions as sub-pixel convolutions: the same numbers from ordinary Convs.

pix2pixHD upsamples with ConvTranspose(kernel 3, stride 2, pads 1, output_padding 1). Output
pixel (2m+a, 2n+b) of such a layer reads input rows m (and m+1 where a = 1) and columns n (and
n+1 where b = 1), each with a fixed kernel tap, so each of the four phases (a, b) is an ordinary
convolution over the input (1x1, 1x2, 2x1 and 2x2 taps: 9 multiply-adds per input pixel and
channel pair, as the transposed convolution's), concatenated and interleaved by
DepthToSpace(DCR). The int8 graph uses this: the CPU runtimes' int8 kernels cover Conv but
measured no faster than bf16 on ConvTranspose. Exact up to float summation order.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from p2phd.export.graph_edit import attributes, copy_of, set_nodes

# phase (0 or 1) -> {input offset: kernel index} along one axis, for kernel 3, stride 2, pad 1
_TAPS = {0: {0: 1}, 1: {0: 2, 1: 0}}


def rewritable(node: onnx.NodeProto) -> bool:
    """A ConvTranspose this module rewrites: kernel 3, stride 2, pads 1, output_padding 1."""
    if node.op_type != "ConvTranspose":
        return False
    a = attributes(node)
    return (
        list(a.get("kernel_shape", [])) == [3, 3]
        and list(a.get("strides", [])) == [2, 2]
        and list(a.get("pads", [0] * 4)) == [1, 1, 1, 1]
        and list(a.get("output_padding", [0, 0])) == [1, 1]
        and list(a.get("dilations", [1, 1])) == [1, 1]
        and a.get("group", 1) == 1
        and "output_shape" not in a
        and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    )


def phase_kernels(weight: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """ConvTranspose weights [Cin, Cout, 3, 3] -> phase (a, b) -> its Conv weights [Cout, Cin,
    kh, kw], in DCR order: (0, 0), (0, 1), (1, 0), (1, 1)."""
    kernels = {}
    for a, rows in _TAPS.items():
        for b, cols in _TAPS.items():
            k = np.zeros((weight.shape[1], weight.shape[0], len(rows), len(cols)), weight.dtype)
            for dy, ky in rows.items():
                for dx, kx in cols.items():
                    k[:, :, dy, dx] = weight[:, :, ky, kx].T
            kernels[a, b] = k
    return kernels


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` with every rewritable ConvTranspose (constant weights) replaced by its
    four phase Convs, a Concat and a DepthToSpace; node names derive from the original's."""
    model = copy_of(model)
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if not (rewritable(node) and node.input[1] in weights):
            nodes.append(node)
            continue
        weight = weights[node.input[1]]
        bias = list(node.input[2:3])
        phases = []
        for (a, b), kernel in phase_kernels(numpy_helper.to_array(weight)).items():
            name = f"{node.name}/phase{a}{b}"
            graph.initializer.append(numpy_helper.from_array(kernel, f"{name}.weight"))
            phases.append(f"{name}/out")
            _, _, kh, kw = kernel.shape
            nodes.append(helper.make_node(
                "Conv", [node.input[0], f"{name}.weight", *bias], [phases[-1]], name=name,
                kernel_shape=[kh, kw], pads=[0, 0, kh - 1, kw - 1],
            ))  # fmt: skip
        joined = f"{node.name}/phases"
        nodes.append(helper.make_node("Concat", phases, [joined], name=joined, axis=1))
        interleave = f"{node.name}/interleave"
        nodes.append(helper.make_node("DepthToSpace", [joined], list(node.output),
                                      name=interleave, blocksize=2, mode="DCR"))  # fmt: skip
    set_nodes(graph, nodes)
    return model
