"""OpenVINO CPU settings on one package: which hint, streams, threads and batch run it fastest.

Times the generator alone (compiled at one size, random dense input) for each configuration:
performance hint LATENCY vs THROUGHPUT, the number of streams, inference threads, fp32 vs bf16,
batch, and a static batch dimension vs a dynamic one (-1, compiled once for every batch size, as
the backend does for batches above 1); with more than one stream, that many infer requests run at
once (AsyncInferQueue), as a server with several requests in flight would. Writes
benchmarks/results/<name>/tuning.json.

    .venv/bin/python benchmarks/openvino_tuning.py /tmp/p2phd-512p --size 256x512 \
        -o benchmarks/results/bench-openvino-tuning

Batch 1, static vs dynamic batch dimension (why the backend compiles batch 1 fully static):

    .venv/bin/python benchmarks/openvino_tuning.py models/default --size 256x512 --batch 1 \
        --configs 0 --batch-dim static,dynamic -o benchmarks/results/openvino-static-batch
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _shared import write_result


def tuning_configs(cores: int) -> list[tuple[str, dict, int]]:
    """(performance hint, extra properties, requests in flight) to try."""
    return [
        ("LATENCY", {}, 1),
        ("LATENCY", {"INFERENCE_NUM_THREADS": cores}, 1),
        ("THROUGHPUT", {}, 1),
        ("THROUGHPUT", {}, cores),
        ("THROUGHPUT", {"NUM_STREAMS": 1}, 1),
    ]


def measure(core, model, config: dict, x: np.ndarray, jobs: int, seconds: float) -> dict:
    """Compile with `config`; run `jobs` requests at a time for ~`seconds` after one warm-up."""
    import openvino as ov

    t0 = time.perf_counter()
    compiled = core.compile_model(model, "CPU", config)
    compile_s = time.perf_counter() - t0
    queue = ov.AsyncInferQueue(compiled, jobs)
    for _ in range(jobs):  # warm-up: every request once
        queue.start_async({0: x})
    queue.wait_all()
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 2 * jobs:
        queue.start_async({0: x})  # blocks while all `jobs` requests are busy
        n += 1
    queue.wait_all()
    wall = time.perf_counter() - t0
    streams = compiled.get_property("NUM_STREAMS")
    threads = compiled.get_property("INFERENCE_NUM_THREADS")
    return {
        "images_per_s": round(n * x.shape[0] / wall, 4),
        # each request's mean time per batch (with `jobs` running side by side)
        "ms_per_batch": round(wall / n * jobs * 1e3, 1),
        "batches": n,
        "compile_s": round(compile_s, 1),
        "streams": int(streams),
        "threads": int(threads),
        "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir")
    p.add_argument("--size", default="256x512")
    p.add_argument("--batch", default="1,2,4")
    p.add_argument("--precision", default="bf16,fp32")
    p.add_argument("--batch-dim", default="static", help="static, dynamic, or both: static,dynamic")
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per configuration")
    p.add_argument(
        "--configs", default="all", help="'all', or comma-separated indices into tuning_configs()"
    )
    p.add_argument("-o", "--output", default="benchmarks/results/bench-openvino-tuning")
    args = p.parse_args(argv)

    import openvino as ov

    from p2phd.engine.apps.bench.harness import OtherLoad
    from p2phd.engine.apps.bench.machine import describe_machine
    from p2phd.engine.core.package import ModelPackage

    package = ModelPackage(args.model_dir)
    h, w = (int(v) for v in args.size.split("x"))
    cores = len(os.sched_getaffinity(0))
    core = ov.Core()
    base = core.read_model(str(package.generator_path))
    name = base.inputs[0].get_any_name()
    configs = tuning_configs(cores)
    if args.configs != "all":
        configs = [configs[int(i)] for i in args.configs.split(",")]
    others = OtherLoad()
    results = []
    rng = np.random.default_rng(0)
    for precision, batch, batch_dim in itertools.product(
        args.precision.split(","), args.batch.split(","), args.batch_dim.split(",")
    ):
        b = int(batch)
        model = base.clone()
        dim = b if batch_dim == "static" else -1
        model.reshape({name: ov.PartialShape([dim, package.manifest.input_channels, h, w])})
        x = rng.uniform(0, 1, (b, package.manifest.input_channels, h, w)).astype(np.float32)
        for hint, extra, jobs in configs:
            config = {
                "PERFORMANCE_HINT": hint,
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                **extra,
            }
            r = measure(core, model, config, x, jobs, args.seconds)
            row = {"precision": precision, "batch": b, "batch_dim": batch_dim, "hint": hint,
                   "extra": extra, "jobs": jobs}  # fmt: skip
            results.append(row | r)
            print(json.dumps(results[-1]), flush=True)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "model_dir": str(package.path),
        "size": args.size,
        "other_load": others.measure(),
        "machine": describe_machine(),
        "openvino": ov.__version__,
        "results": results,
    }
    write_result(out / "tuning.json", doc)
    print(f"wrote {out / 'tuning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
