"""Q/DQ int8 graph of a random-weight package by issue 20's recipe, without the sensitivity search
(random weights have no quality to keep): the last convolution in float, as the searches on the
trained 512p generators kept it. Timing only. Usage: quantize.py PKG"""

import sys

import onnx

from p2phd.export import int8, split_concat, subpixel

pkg = sys.argv[1]
cal = int8.calibration_set(pkg, "synthetic", (256, 512))
model = split_concat.rewrite(subpixel.rewrite(onnx.load(f"{pkg}/generator.onnx")))
last = [n.name for n in model.graph.node if n.op_type == "Conv"][-1]
kept = int8.float_layers(model) | {last: "timing run: the last convolution, as the searches kept"}
samples = [s.dense for s in cal.calibrate[:4]]
onnx.save(int8.quantize(model, samples, model.graph.input[0].name, kept), f"{pkg}/int8.onnx")
print("quantized; kept in float:", sorted(kept))
