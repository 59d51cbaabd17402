"""The int8 sensitivity search (export/sensitivity.py) on the trained default model: NNCF's real
Q/DQ graph, ONNX Runtime measuring it, synthetic street scenes at 64x128."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from p2phd.engine.core.package import ModelPackage
from p2phd.export import int8, sensitivity, split_concat, subpixel
from tests.conftest import REPO


@pytest.fixture(scope="module")
def graphs():
    """(fp32 path, the rewritten fp32 graph, its all-int8 Q/DQ graph, calibration inputs)."""
    path = ModelPackage(REPO / "models" / "default").generator_path
    cal = int8.calibration_set(path.parent, int8.SYNTHETIC, (64, 128))
    model = split_concat.rewrite(subpixel.rewrite(onnx.load(str(path))))
    samples = [s.dense for s in cal.calibrate]
    quantized = int8.quantize(model, samples, model.graph.input[0].name, int8.float_layers(model))
    return path, model, quantized, samples


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def test_every_convolution_back_in_float_computes_the_fp32_graph(graphs):
    _, model, quantized, samples = graphs
    convs = sensitivity.quantized_convs(quantized)
    assert len(convs) == 30  # 4 phases for each of 3 transposed convs, the last conv split in 2
    restored = sensitivity.in_float(quantized, model, set(convs))
    ops = {n.op_type for n in restored.graph.node}
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops  # the bypassed ones go
    # The fp32 biases, not the quantizer's bias-corrected ones: the same function to fp32 rounding.
    np.testing.assert_allclose(run(restored, samples[0]), run(model, samples[0]), atol=2e-5)
    one = sensitivity.in_float(quantized, model, {convs[0]})
    assert sensitivity.quantized_convs(one) == convs[1:]

    # A convolution whose input NNCF left unquantized keeps that input (only its weights change).
    bare = onnx.ModelProto()
    bare.CopyFrom(quantized)
    first = next(n for n in bare.graph.node if n.name == convs[0])
    producer = {o: n for n in bare.graph.node for o in n.output}
    first.input[0] = producer[producer[first.input[0]].input[0]].input[0]  # skip its Q/DQ
    restored = sensitivity.in_float(bare, model, {convs[0]})
    np.testing.assert_allclose(
        run(restored, samples[0]),
        run(sensitivity.in_float(quantized, model, {convs[0]}), samples[0]),
    )


def test_the_search_keeps_the_fewest_convolutions_in_float_it_needs(graphs, monkeypatch):
    path, model, quantized, samples = graphs
    check = sensitivity.Check(path, samples)
    everything = check(quantized)
    assert everything.passed  # the recipe's default margin: the default model is all int8 here
    search = sensitivity.keep_in_float(quantized, model, check)
    assert search.kept == {} and search.verdict == everything
    assert search.summary.startswith("not needed: all quantized, 4 calibration maps: worst image")

    # A floor 1.5 dB above what the all-int8 graph's worst map measures: the search must act.
    floor = everything.worst_db + 1.5 - sensitivity.quality.MIN_PSNR_DB
    monkeypatch.setattr(sensitivity, "CHECK_MARGIN", (floor, 2))
    search = sensitivity.keep_in_float(quantized, model, check)
    kept, verdict = search.kept, search.verdict
    assert verdict.passed and verdict.psnr_db > everything.psnr_db
    assert (
        0 < len(kept) <= len(sensitivity.quantized_convs(quantized)) * sensitivity.MAX_FLOAT_SHARE
    )
    assert check(sensitivity.in_float(quantized, model, set(kept))) == verdict
    # The fewest: without any one of them, the graph misses the margin.
    for name in kept:
        assert not check(sensitivity.in_float(quantized, model, set(kept) - {name})).passed
    assert all(why.startswith("sensitivity search: all 30 convolutions") for why in kept.values())
    assert search.summary.startswith(f"{len(kept)} of 30 in float: 4 calibration maps")

    # A floor nothing reaches: float layers would only slow a graph the gate refuses.
    monkeypatch.setattr(sensitivity, "CHECK_MARGIN", (60.0, 0))
    search = sensitivity.keep_in_float(quantized, model, check)
    assert search.kept == {} and not search.verdict.passed
    assert search.summary.startswith("failed: all 30 convolutions quantized")
    assert "with the 7 most sensitive in float still" in search.summary


def test_a_convolution_the_later_ones_make_needless_is_quantized_again(graphs):
    """The ranking is of each convolution alone: A helps most alone, but once B and C are in
    float the graph passes without A, and the search must not keep it (a stand-in check)."""
    _, model, quantized, _ = graphs
    convs = sensitivity.quantized_convs(quantized)
    alone = {convs[0]: 10.0, convs[1]: 8.0, convs[2]: 7.0}  # A, B, C

    class Check:
        samples = [None] * 4

        def __call__(self, graph):
            floats = set(convs) - set(sensitivity.quantized_convs(graph))
            psnr = 30.0 + sum(alone.get(n, 0.0) for n in floats)
            passed = {convs[1], convs[2]} <= floats
            return sensitivity.Verdict(passed, f"{psnr} dB", psnr, psnr)

    search = sensitivity.keep_in_float(quantized, model, Check())
    assert set(search.kept) == {convs[1], convs[2]} and search.verdict.passed
    assert search.summary.startswith("2 of 30 in float")
