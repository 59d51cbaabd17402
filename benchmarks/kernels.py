"""Time the CPU kernels against the NumPy reference and the original per-instance loop.

On the real 2048x1024 Cityscapes frames in ../shared/data/cityscapes-sample (synthetic blocky
maps with ~25 instances when absent): milliseconds (median and best of --repeat runs) and
effective GB/s (bytes each kernel must read and write, over the median time). Writes
benchmarks/results/kernels.json. Example:

    .venv/bin/python benchmarks/kernels.py --frames 3 --repeat 15
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _shared import FEATURES, LABEL_NC, RESULTS, SAMPLES, cityscapes_frames, write_result

from p2phd.engine import kernels
from p2phd.engine.apps.bench.machine import cpu_model
from p2phd.engine.kernels import reference


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, best) wall time in ms, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def record(rows: dict, name: str, fn: Callable[[], object], repeat: int, nbytes: int) -> None:
    median, best = timed(fn, repeat)
    entry = rows.setdefault(name, {"median_ms": [], "best_ms": [], "bytes": nbytes})
    entry["median_ms"].append(median)
    entry["best_ms"].append(best)


def bench_frame(instances: np.ndarray, labels: np.ndarray, repeat: int, rows: dict) -> int:
    """Time every kernel on one frame; returns its instance count."""
    b, h, w = instances.shape
    px = b * h * w
    rng = np.random.default_rng(1)
    inst = kernels.compact_instances(instances, labels)
    features = rng.normal(size=(b, FEATURES, h, w)).astype(np.float32)
    table = rng.normal(size=(b, inst.kmax, FEATURES)).astype(np.float32)
    output = rng.uniform(-1, 1, size=(b, 3, h, w)).astype(np.float32)
    channels = LABEL_NC + 1 + FEATURES
    slow = max(1, repeat // 5)

    record(
        rows,
        "compact/native",
        lambda: kernels.compact_instances(instances, labels),
        repeat,
        instances.nbytes + px * 4,
    )
    record(
        rows,
        "compact/numpy",
        lambda: reference.compact(instances, labels),
        slow,
        instances.nbytes + px * 4,
    )
    record(rows, "boundaries/native", lambda: kernels.instance_boundaries(inst.ids), repeat, px * 5)
    record(rows, "boundaries/numpy", lambda: reference.boundaries(inst.ids), slow, px * 5)
    pool_bytes = px * (4 + 2 * 4 * FEATURES)
    record(rows, "pool/native", lambda: kernels.instance_pool(features, inst), repeat, pool_bytes)
    record(
        rows, "pool/numpy", lambda: reference.pool(features, inst.ids, inst.kmax), slow, pool_bytes
    )
    record(
        rows,
        "pool/per-instance-loop",
        lambda: reference.pool_per_instance_loop(features, inst.ids),
        slow,
        pool_bytes,
    )
    for dtype in kernels.DTYPES:
        out = np.empty((b, channels, h, w), kernels.DTYPES[dtype][0])
        nbytes = px * 5 + out.nbytes
        record(
            rows,
            f"assemble-{dtype}/native",
            lambda d=dtype, o=out: kernels.assemble_input(
                labels, inst, LABEL_NC, True, table, d, o
            ),
            repeat,
            nbytes,
        )
        record(
            rows,
            f"assemble-{dtype}/numpy",
            lambda d=dtype: reference.assemble(labels, inst.ids, LABEL_NC, True, table).astype(
                kernels.DTYPES[d][0]
            ),
            slow,
            nbytes,
        )
        record(
            rows,
            f"preprocess-{dtype}/native",
            lambda d=dtype, o=out: kernels.assemble_input(
                labels, kernels.compact_instances(instances, labels), LABEL_NC, True, table, d, o
            ),
            repeat,
            nbytes + instances.nbytes + px * 4,
        )
    record(
        rows,
        "preprocess-float32-fresh-buffer/native",
        lambda: kernels.assemble_input(
            labels, kernels.compact_instances(instances, labels), LABEL_NC, True, table
        ),
        repeat,
        px * (9 + channels * 4) + instances.nbytes,
    )
    record(rows, "to_uint8/native", lambda: kernels.to_uint8_rgb(output), repeat, px * 15)
    record(rows, "to_uint8/numpy", lambda: reference.to_uint8(output), slow, px * 15)
    return inst.kmax


def summarise(rows: dict) -> dict:
    table = {}
    for name, entry in rows.items():
        median = statistics.median(entry["median_ms"])
        table[name] = {
            "median_ms": round(median, 3),
            "best_ms": round(min(entry["best_ms"]), 3),
            "GB_per_s": round(entry["bytes"] / median / 1e6, 2),
        }
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=3, help="frames to time (median over frames)")
    p.add_argument("--repeat", type=int, default=15, help="timed runs per kernel and frame")
    p.add_argument("--samples", type=Path, default=SAMPLES, help="Cityscapes sample folder")
    p.add_argument("-o", "--output", type=Path, default=RESULTS / "kernels.json")
    args = p.parse_args(argv)

    load = os.getloadavg()[0]  # other work on the machine inflates the times; recorded
    source, pairs = cityscapes_frames(args.frames, args.samples)
    rows: dict = {}
    counts = []
    for i, (instances, labels) in enumerate(pairs):
        counts.append(bench_frame(instances, labels, args.repeat, rows))
        print(f"frame {i + 1}/{len(pairs)}: {counts[-1]} instances", file=sys.stderr)
    table = summarise(rows)
    ms = {name: row["median_ms"] for name, row in table.items()}
    result = {
        "command": "python benchmarks/kernels.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "kernel_threads": os.environ.get("P2PHD_KERNEL_THREADS", "all cores"),
            "load_average_1min_at_start": round(load, 2),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "input": {
            "source": source,
            "frames": len(pairs),
            "shape": list(pairs[0][0].shape),
            "instances_per_frame": counts,
            "label_nc": LABEL_NC,
            "feature_channels": FEATURES,
        },
        "kernels": table,
        "targets": {
            "pool_speedup_vs_per_instance_loop (>= 100)": round(
                ms["pool/per-instance-loop"] / ms["pool/native"], 1
            ),
            "preprocess_float32_ms (< 10)": ms["preprocess-float32/native"],
            "preprocess_float16_ms": ms["preprocess-float16/native"],
        },
    }
    write_result(args.output, result, echo=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
