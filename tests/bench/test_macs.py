"""MAC counting from ONNX graphs: a hand-counted graph, and a real generator's scaling."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from p2phd.common.errors import PackageError
from p2phd.engine.apps.bench.macs import count_macs, count_model_macs


def init(name: str, shape: tuple[int, ...], dtype=np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype), name)


def known_graph():
    """reflect Pad -> Conv 3x3 -> grouped strided 1x1 Conv -> ConvTranspose x2 -> MatMul."""
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
        helper.make_node("Conv", ["p", "w1"], ["c1"]),  # [1,4,8,8]
        helper.make_node("Conv", ["c1", "w2"], ["c2"], group=2, strides=[2, 2]),  # [1,4,4,4]
        helper.make_node("ConvTranspose", ["c2", "w3"], ["c3"], strides=[2, 2]),  # [1,2,8,8]
        helper.make_node("Relu", ["c3"], ["r"]),
        helper.make_node("MatMul", ["r", "w4"], ["y"]),  # [1,2,8,600]
    ]
    inits = [
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads"),
        init("w1", (4, 3, 3, 3)),
        init("w2", (4, 2, 1, 1)),
        init("w3", (4, 2, 2, 2)),
        init("w4", (8, 600)),  # 4800 elements: its data is dropped, its dims kept
    ]
    graph = helper.make_graph(
        nodes,
        "known",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_known_graph_matches_hand_count():
    macs = count_model_macs(known_graph(), (1, 3, 8, 8))
    conv1 = (4 * 8 * 8) * (3 * 3 * 3)  # outputs x (C_in x k x k)
    conv2 = (4 * 4 * 4) * (2 * 1 * 1)  # outputs x (C_in / group x 1 x 1)
    convt = (4 * 4 * 4) * (2 * 2 * 2)  # inputs x (C_out / group x k x k)
    matmul = (2 * 8 * 600) * 8  # outputs x K
    assert macs.by_op == {"Conv": conv1 + conv2, "ConvTranspose": convt, "MatMul": matmul}
    assert macs.total == conv1 + conv2 + convt + matmul
    assert macs.nodes == 4


def test_macs_scale_with_batch_and_pixels(bench_package):
    path = bench_package / "generator.onnx"
    one = count_macs(path, (1, 39, 32, 64)).total
    assert one > 0
    assert count_macs(path, (2, 39, 32, 64)).total == 2 * one
    assert count_macs(path, (1, 39, 64, 128)).total == 4 * one


def test_unreadable_graph_is_a_package_error(tmp_path):
    bad = tmp_path / "generator.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(PackageError, match="generator.onnx"):
        count_macs(bad, (1, 3, 8, 8))
