"""The fp16 variant's graph: a valid single-assignment graph with one Cast per tensor, whatever
the network's shape, computing what the fp32 graph computes; its error in true fp16 is in the
package's parity report."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from p2phd.engine.core.package import ModelPackage
from p2phd.export.fp16 import to_fp16
from p2phd.export.package_info import describe_package
from p2phd.export.package_writer import export_package, generator_inputs
from p2phd.export.parity import cpu_session
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_generator

CFG = ModelConfig(label_nc=5, ngf=8, n_downsample_global=2, n_blocks_global=2)


def two_fp32_readers() -> onnx.ModelProto:
    """Conv -> c, read by an InstanceNormalization and a Tanh (both kept fp32), summed."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (3, 2, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.ones(3, np.float32), "scale"),
        numpy_helper.from_array(np.zeros(3, np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("InstanceNormalization", ["c", "scale", "bias"], ["n"]),
        helper.make_node("Tanh", ["c"], ["t"]),
        helper.make_node("Add", ["n", "t"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_readers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_two_fp32_nodes_reading_one_tensor_share_one_cast():
    model = two_fp32_readers()
    half = to_fp16(model)
    onnx.checker.check_model(half, full_check=True)  # single assignment, types consistent
    outputs = [y for node in half.graph.node for y in node.output]
    assert len(outputs) == len(set(outputs))
    casts_of_c = [n for n in half.graph.node if n.op_type == "Cast" and n.input[0] == "c"]
    assert len(casts_of_c) == 1
    x = np.random.default_rng(1).uniform(-1, 1, (1, 2, 8, 8)).astype(np.float32)
    (want,) = ReferenceEvaluator(model).run(None, {"x": x})
    (got,) = ReferenceEvaluator(half).run(None, {"x": x})
    assert got.dtype == np.float32 and np.abs(got - want).max() < 2e-2


def test_fp16_variant_evaluated_in_fp16_has_its_psnr_in_the_parity_report(tmp_path):
    torch.manual_seed(0)
    pkg = ModelPackage(export_package(tmp_path / "m", build_generator(CFG).eval(), CFG))
    recorded = pkg.manifest.parity["fp16_psnr_db"]
    # Recompute with onnx.reference's own fp16 convolutions (slow, but the model is tiny).
    make_input, sizes = generator_inputs(CFG, CFG.size_multiple)
    x = make_input(1, *sizes[0]).numpy()
    (fp32,) = cpu_session(pkg.generator_path).run(None, {"input": x})
    (fp16,) = ReferenceEvaluator(onnx.load(str(pkg.variant_path("fp16")))).run(None, {"input": x})
    psnr = 10 * np.log10(4 / np.mean((fp16.astype(np.float64) - fp32) ** 2))
    assert 40 < recorded < 100  # fp16 rounding shows (not ~identical), and is small
    assert abs(recorded - psnr) < 3, (recorded, psnr)
    assert f"fp16 in fp16  {recorded:.1f} dB PSNR" in describe_package(pkg.path)
