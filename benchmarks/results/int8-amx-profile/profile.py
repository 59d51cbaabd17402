"""Where a generator's time goes on this CPU: OpenVINO's per-node profile, summed per node and
kernel type, for the graph p2phd's OpenVINO backend compiles (the space-to-depth rewrite applied),
or PyTorch eager fp32 of the same random-weight 512p network. Usage:
  profile.py openvino MODEL.onnx PRECISION_HINT BATCH CHANNELS
  profile.py eager BATCH"""

import collections
import json
import sys
import time

import numpy as np

H, W, ROUNDS = 256, 512, 3


def openvino(path, hint, batch, channels):
    import openvino as ov

    from p2phd.engine.backends.openvino_rewrites import space_to_depth_narrow_convs

    model = ov.Core().read_model(path)
    model.reshape({model.inputs[0].get_any_name(): ov.PartialShape([batch, channels, H, W])})
    space_to_depth_narrow_convs(model)
    config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES"}
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random((batch, channels, H, W), np.float32)
    request.infer({0: x})
    per_type, count, per_node, times = collections.Counter(), collections.Counter(), {}, []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        request.infer({0: x})
        times.append(time.perf_counter() - t)
        for node in request.profiling_info:
            if node.status == node.Status.EXECUTED:
                key = f"{node.node_type} {node.exec_type}"
                per_type[key] += node.real_time.total_seconds() * 1e3 / ROUNDS / batch
                count[key] += 1
                ms = node.real_time.total_seconds() * 1e3 / ROUNDS / batch
                per_node[node.node_name] = per_node.get(node.node_name, (key, 0.0))
                per_node[node.node_name] = (key, per_node[node.node_name][1] + ms)
    return {
        "model": path,
        "hint": hint,
        "batch": batch,
        "threads": compiled.get_property("INFERENCE_NUM_THREADS"),
        "ms_per_image": [round(t * 1e3 / batch, 1) for t in times],
        "profiled_ms_per_image": round(sum(per_type.values()), 1),
        "by_kernel_ms_per_image": {
            k: [round(v, 2), count[k] // ROUNDS] for k, v in per_type.most_common()
        },
        "nodes_ms_per_image": {
            name: [kernel, round(ms, 2)]
            for name, (kernel, ms) in sorted(per_node.items(), key=lambda i: -i[1][1])
            if ms >= 0.05
        },
    }


def eager(batch):
    import torch

    from p2phd.train.pix2pixhd.config import ModelConfig
    from p2phd.train.pix2pixhd.networks import build_generator

    cfg = ModelConfig(label_nc=35, ngf=64, n_downsample_global=4, n_blocks_global=9)
    net = build_generator(cfg).eval()
    x = torch.rand(batch, 36, H, W)
    times = []
    with torch.inference_mode():
        net(x)
        for _ in range(ROUNDS):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
    return {
        "eager_fp32_ms_per_image": [round(t * 1e3 / batch, 1) for t in times],
        "torch_threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    a = sys.argv[1:]
    out = openvino(a[1], a[2], int(a[3]), int(a[4])) if a[0] == "openvino" else eager(int(a[1]))
    print(json.dumps(out, indent=1))
