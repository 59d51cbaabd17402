"""Time the CUDA kernels on the GPU, each checked against the CPU kernels on the same frames.

Real 2048x1024 Cityscapes frames (--samples; synthetic blocky maps when absent): per kernel the
median device time of --repeat launches (CUDA events on the default stream), effective GB/s
(the bytes each kernel must read and write) and that as a share of a device-to-device copy
measured in the same run (the GPU's practical memory bandwidth). Before timing, every kernel's
output is compared with the CPU kernels' (pooling within 1e-5); a mismatch exits 1. Needs a GPU
with cuda-python and NVRTC (`p2phd doctor`: "CUDA kernels ok"). Writes
benchmarks/results/cuda-kernels.json. Example:

    python benchmarks/cuda_kernels.py --frames 3 --repeat 50
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _shared import FEATURES, LABEL_NC, RESULTS, SAMPLES, cityscapes_frames, write_result

from p2phd.engine import kernels
from p2phd.engine.apps.bench.gpu import CudaEventTimer, describe_gpu
from p2phd.engine.core.cuda_runtime import check, driver
from p2phd.engine.kernels import cuda

COPY_BYTES = 1 << 30  # the device-to-device copy that gives the bandwidth reference


class Device:
    """Device buffers through the driver API (device 0's primary context), freed at exit."""

    def __init__(self):
        cuda._loaded().functions()  # compiles/loads the kernels; makes the context current
        self.drv = driver()
        self.allocations: list[int] = []

    def empty(self, shape, dtype) -> cuda.DeviceArray:
        dtype = np.dtype(dtype)
        ptr = int(check(self.drv.cuMemAlloc(max(int(np.prod(shape)) * dtype.itemsize, 1))))
        self.allocations.append(ptr)
        return cuda.DeviceArray(ptr, tuple(shape), dtype)

    def upload(self, a: np.ndarray) -> cuda.DeviceArray:
        a = np.ascontiguousarray(a)
        d = self.empty(a.shape, a.dtype)
        check(self.drv.cuMemcpyHtoD(d.ptr, a.ctypes.data, a.nbytes))
        return d

    def download(self, d: cuda.DeviceArray) -> np.ndarray:
        check(self.drv.cuCtxSynchronize())
        out = np.empty(d.shape, d.dtype)
        check(self.drv.cuMemcpyDtoH(out.ctypes.data, d.ptr, out.nbytes))
        return out

    def close(self) -> None:
        for ptr in self.allocations:
            check(self.drv.cuMemFree(ptr))


def device_ms(fn: Callable[[], object], repeat: int) -> float:
    """Device milliseconds per call: `repeat` calls between two events, after two warm-ups."""
    for _ in range(2):
        fn()
    timer = CudaEventTimer(0)
    timer.record_start()
    for _ in range(repeat):
        fn()
    timer.record_end()
    ms = timer.elapsed_ms() / repeat
    timer.close()
    return ms


def copy_gb_per_s(dev: Device, repeat: int) -> float:
    """A device-to-device copy's GB/s, counting bytes read and written."""
    src, dst = dev.empty((COPY_BYTES,), np.uint8), dev.empty((COPY_BYTES,), np.uint8)
    ms = device_ms(lambda: check(dev.drv.cuMemcpyDtoD(dst.ptr, src.ptr, COPY_BYTES)), repeat)
    return 2 * COPY_BYTES / ms / 1e6


def bench_frame(dev: Device, instances, labels, repeat: int, rows: dict) -> list[str]:
    """Check, then time, every kernel on one frame; returns the kernels that differ from CPU."""
    b, h, w = labels.shape
    px = b * h * w
    rng = np.random.default_rng(1)
    inst = kernels.compact_instances(instances, labels)
    features = rng.normal(size=(b, FEATURES, h, w)).astype(np.float32)
    output = rng.uniform(-1, 1, size=(b, 3, h, w)).astype(np.float32)
    means_cpu, map_cpu = kernels.instance_pool(features, inst)
    ids, labs = dev.upload(inst.ids), dev.upload(labels)
    feats, table = dev.upload(features), dev.upload(means_cpu)
    wrong = []

    edges = dev.empty((b, h, w), np.uint8)
    run = lambda: cuda.instance_boundaries(ids, edges)  # noqa: E731
    run()
    if not np.array_equal(dev.download(edges), kernels.instance_boundaries(inst.ids)):
        wrong.append("boundaries")
    rows.setdefault("boundaries", []).append((device_ms(run, repeat), px * 5))

    means = dev.empty(means_cpu.shape, np.float32)
    broadcast = dev.empty(features.shape, np.float32)
    workspace = dev.empty((cuda.pool_workspace_bytes(b, FEATURES, inst.kmax),), np.uint8)
    run = lambda: cuda.instance_pool(feats, ids, inst.kmax, means, broadcast, workspace)  # noqa: E731
    run()
    if not (np.allclose(dev.download(means), means_cpu, rtol=1e-5, atol=1e-6)
            and np.allclose(dev.download(broadcast), map_cpu, rtol=1e-5, atol=1e-6)):  # fmt: skip
        wrong.append("pool")
    rows.setdefault("pool+broadcast", []).append((device_ms(run, repeat), px * (4 + 8 * FEATURES)))

    channels = LABEL_NC + 1 + FEATURES
    for dtype, (np_dtype, _) in kernels.DTYPES.items():
        out = dev.empty((b, channels, h, w), np_dtype)
        args = (labs, ids, table, LABEL_NC, True, out)
        run = lambda a=args: cuda.assemble_input(*a, kmax=inst.kmax)  # noqa: E731
        run()
        expected = kernels.assemble_input(labels, inst, LABEL_NC, True, means_cpu, dtype)
        if not np.array_equal(dev.download(out), expected):
            wrong.append(f"assemble-{dtype}")
        nbytes = px * 5 + out.dtype.itemsize * int(np.prod(out.shape))
        rows.setdefault(f"assemble-{dtype}", []).append((device_ms(run, repeat), nbytes))

        gen = dev.upload(output.astype(np_dtype))
        rgb = dev.empty((b, h, w, 3), np.uint8)
        run = lambda g=gen, r=rgb: cuda.to_uint8_rgb(g, r)  # noqa: E731
        run()
        if not np.array_equal(dev.download(rgb), kernels.to_uint8_rgb(output.astype(np_dtype))):
            wrong.append(f"to_uint8-{dtype}")
        nbytes = px * 3 + px * 3 * np.dtype(np_dtype).itemsize
        rows.setdefault(f"to_uint8-{dtype}", []).append((device_ms(run, repeat), nbytes))
    return wrong


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=3, help="frames to time (median over frames)")
    p.add_argument("--repeat", type=int, default=50, help="timed launches per kernel and frame")
    p.add_argument("--samples", type=Path, default=SAMPLES, help="Cityscapes sample folder")
    p.add_argument("-o", "--output", type=Path, default=RESULTS / "cuda-kernels.json")
    args = p.parse_args(argv)

    reason = cuda.unavailable_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    source, pairs = cityscapes_frames(args.frames, args.samples)
    dev = Device()
    try:
        copy = copy_gb_per_s(dev, 10)
        rows: dict = {}
        wrong = []
        for i, (instances, labels) in enumerate(pairs):
            wrong += bench_frame(dev, instances, labels, args.repeat, rows)
            print(f"frame {i + 1}/{len(pairs)}", file=sys.stderr)
    finally:
        dev.close()
    table = {}
    for name, runs in rows.items():
        ms = statistics.median(r[0] for r in runs)
        gb_s = runs[0][1] / ms / 1e6
        table[name] = {"median_ms": round(ms, 4), "GB_per_s": round(gb_s, 1),
                       "share_of_copy": round(gb_s / copy, 3)}  # fmt: skip
    result = {
        "command": "python benchmarks/cuda_kernels.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "gpu": describe_gpu(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },  # fmt: skip
        "input": {
            "source": source,
            "frames": len(pairs),
            "shape": list(pairs[0][1].shape),
            "label_nc": LABEL_NC,
            "feature_channels": FEATURES,
        },  # fmt: skip
        "device_copy_GB_per_s": round(copy, 1),
        "equal_to_cpu": not wrong,
        "differs_from_cpu": sorted(set(wrong)),
        "kernels": table,
    }
    write_result(args.output, result, echo=True)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
