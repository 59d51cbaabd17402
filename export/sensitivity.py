"""Which convolutions of an int8 graph to keep in float: a sensitivity search for the fewest
that pass the int8 gate.

Every convolution is quantized first (the fastest graph). Where that misses the gate with a
margin on a few calibration maps, each quantized convolution is put back to float alone (its
input unquantized, the fp32 model's weights and bias) and the maps' error measured; convolutions
then go back to float in order of how much each alone lowered the error, one at a time, until
the graph passes or MAX_FLOAT_SHARE of them are float; then each but the last is tried without,
in case the later ones made it needless. Measured by ONNX Runtime on the CPU
against the fp32 generator's outputs, computed once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from p2phd.engine.core import quality
from p2phd.export.graph_edit import copy_of, set_nodes

log = logging.getLogger(__name__)

CHECK_MAPS = 4  # calibration maps the graph is checked on
CHECK_MARGIN = (3.0, 2)  # dB above the gate's PSNR floor, levels below its percentile bound
MAX_FLOAT_SHARE = 0.25  # of the quantized convolutions; past it int8 buys little over bf16


@dataclass(frozen=True)
class Verdict:
    """What the check measured on one graph."""

    passed: bool
    numbers: str  # the gate's numbers
    psnr_db: float  # over all the check's maps: what the search ranks by
    worst_db: float | None  # the worst map's (None: identical)


class Check:
    """The int8 gate with a margin (CHECK_MARGIN) on calibration maps. The margin because the
    quantizer saw these maps, which flatters it: with the last convolution quantized, the default
    model measured 99.9th-percentile errors of 8-9 levels on held-out maps where these passed."""

    def __init__(self, fp32: Path, samples: list[np.ndarray]):
        import onnxruntime as ort

        self._options = ort.SessionOptions()
        self._options.log_severity_level = 3  # the unused-initializer warnings of a Q/DQ graph
        self.samples = samples[:CHECK_MAPS]
        self.reference = self._run(str(fp32))

    def _run(self, model: str | bytes) -> np.ndarray:
        import onnxruntime as ort

        session = ort.InferenceSession(model, self._options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: x})[0] for x in self.samples])

    def __call__(self, model: onnx.ModelProto) -> Verdict:
        from p2phd.engine.kernels import to_uint8_rgb

        output = self._run(model.SerializeToString())
        entry = quality.local_error(self.reference, output)
        psnr_margin, levels_margin = CHECK_MARGIN
        floor = quality.MIN_PSNR_DB + psnr_margin
        bound = quality.INT8_MAX_P999_LEVELS - levels_margin
        psnr, p999 = entry["worst_image_psnr_db"], entry["p999_levels"]
        passed = p999 <= bound and (psnr is None or psnr >= floor)  # None: identical
        numbers = (
            f"{len(self.samples)} calibration maps: worst image {psnr} dB, 99.9th-percentile "
            f"error {p999:g} levels (with the margin: {floor:g} dB, {bound} levels)"
        )
        overall = quality.psnr_db(*(to_uint8_rgb(a) for a in (self.reference, output)))
        return Verdict(passed, numbers, overall, psnr)


def quantized_convs(model: onnx.ModelProto) -> list[str]:
    """The Conv nodes whose weights come through a DequantizeLinear, in graph order."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "Conv" and producer.get(n.input[1]) == "DequantizeLinear"
    ]


def in_float(quantized: onnx.ModelProto, fp32: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy of the Q/DQ graph `quantized` in which the convolutions `names` read their input
    before its quantizer (where it has one) and the weights and bias of the same-named node of
    `fp32` (the graph before quantization: its biases, not the quantizer's bias-corrected ones)."""
    model = copy_of(quantized)
    producer = {o: n for n in model.graph.node for o in n.output}
    originals = {n.name: n for n in fp32.graph.node}
    weights = {t.name: t for t in fp32.graph.initializer}
    for node in (n for n in model.graph.node if n.name in names):
        dequantize = producer.get(node.input[0])
        if dequantize is not None and dequantize.op_type == "DequantizeLinear":
            quantize = producer[dequantize.input[0]]  # its input: the float activation
            node.input[0] = quantize.input[0]
        for i, name in enumerate(originals[node.name].input[1:], 1):
            tensor = onnx.TensorProto()
            tensor.CopyFrom(weights[name])
            tensor.name = f"{name}.float"
            model.graph.initializer.append(tensor)
            node.input[i] = tensor.name
    set_nodes(model.graph, _live(model.graph))
    return model


def _live(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's nodes without those whose outputs nothing reads (the quantizers bypassed)."""
    nodes = list(graph.node)
    while True:
        read = {name for n in nodes for name in n.input} | {o.name for o in graph.output}
        live = [n for n in nodes if any(o in read for o in n.output)]
        if len(live) == len(nodes):
            return nodes
        nodes = live


@dataclass(frozen=True)
class Search:
    """What the search decided, and what it measured."""

    kept: dict[str, str]  # convolution -> why it stays in float
    verdict: Verdict  # the check's, on the graph with `kept` in float
    summary: str  # for the calibration record


def keep_in_float(quantized: onnx.ModelProto, fp32: onnx.ModelProto, check: Check) -> Search:
    """The fewest convolutions to keep in float for the graph to pass `check` (none when all
    quantized passes). Where no MAX_FLOAT_SHARE of them passes, none: float layers that do not
    pass the gate only slow a graph the gate refuses; the summary says what the search found."""
    from tqdm import tqdm

    everything = check(quantized)
    convs = quantized_convs(quantized)
    if everything.passed or not convs:
        return Search({}, everything, f"not needed: all quantized, {everything.numbers}")
    log.info("int8: all %d convolutions quantized: %s; searching", len(convs), everything.numbers)
    alone = {
        name: check(in_float(quantized, fp32, {name})).psnr_db
        for name in tqdm(convs, desc="int8 sensitivity search", unit="conv")
    }
    ranked = sorted(convs, key=alone.__getitem__, reverse=True)
    missed = (
        f"all {len(convs)} convolutions quantized: {everything.psnr_db:.1f} dB overall on "
        f"{everything.numbers}"
    )
    kept: dict[str, str] = {}
    for rank, name in enumerate(ranked[: max(1, int(len(convs) * MAX_FLOAT_SHARE))], 1):
        kept[name] = f"sensitivity search: {missed}; this one alone in float: {alone[name]:.1f} dB"
        log.info("int8: in float, rank %d: %s (%.1f dB alone)", rank, name, alone[name])
        verdict = check(in_float(quantized, fp32, set(kept)))
        if verdict.passed:
            kept, verdict = _pruned(quantized, fp32, check, kept, verdict)
            return Search(kept, verdict, f"{len(kept)} of {len(convs)} in float: {verdict.numbers}")
    return Search(
        {},
        everything,
        f"failed: {missed}; with the {len(kept)} most sensitive in float still {verdict.numbers}; "
        "all left quantized",
    )


def _pruned(quantized, fp32, check: Check, kept: dict[str, str], verdict: Verdict):
    """`kept` without the convolutions the graph passes without (one ranked high alone may be
    needless once later ones are in float), each tried once, and the verdict on what is left."""
    for name in list(kept)[:-1]:  # the graph failed without the last one added
        trial = {k: why for k, why in kept.items() if k != name}
        trial_verdict = check(in_float(quantized, fp32, set(trial)))
        if trial_verdict.passed:
            log.info("int8: %s is not needed in float once the others are", name)
            kept, verdict = trial, trial_verdict
    return kept, verdict
