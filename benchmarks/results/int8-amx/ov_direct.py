"""The one-off timing of ov_direct.txt: OpenVINO bf16 against the int8 graph, batch 4 at 256x512,
alternating twice, on the package amx.sh made (run right after it, on the same machine)."""

import time

import numpy as np
import openvino as ov

core = ov.Core()
x = np.random.default_rng(0).standard_normal((4, 36, 256, 512)).astype(np.float32)
for p in ["/tmp/p512/generator.onnx", "/tmp/p512/generator.int8.onnx"] * 2:
    m = core.read_model(p)
    m.reshape({m.inputs[0].get_any_name(): list(x.shape)})
    cfg = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
    r = core.compile_model(m, "CPU", cfg).create_infer_request()
    r.infer({0: x})
    t = []
    for _ in range(6):
        s = time.perf_counter()
        r.infer({0: x})
        t.append(time.perf_counter() - s)
    print(p, "ms/image", round(1000 * np.median(t) / 4, 1), [round(1000 * v / 4) for v in t])
