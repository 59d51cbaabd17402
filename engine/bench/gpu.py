"""GPU instrumentation for the benchmark: CUDA-event timing, NVTX ranges, TensorRT layer times.

Everything here is optional at import: without CUDA, `nvtx` or TensorRT the helpers fall back to
no-ops (NVTX), wall-clock timing, or report nothing, so the CPU benchmark never needs them.
NVTX ranges are named "p2phd/<stage>" so an Nsight Systems timeline shows the pipeline stages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np

from p2phd.engine.cuda_runtime import check as _ok
from p2phd.engine.cuda_runtime import runtime as _cudart


def _nvtx_push_pop() -> tuple[Callable[[str], object], Callable[[], object]] | None:
    """push/pop functions from the `nvtx` package, else torch.cuda.nvtx, else None."""
    try:
        import nvtx

        return (lambda name: nvtx.push_range(name)), nvtx.pop_range
    except ImportError:
        pass
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop
    except ImportError:
        pass
    return None


class Nvtx:
    """NVTX ranges around pipeline stages; a no-op where no NVTX binding is installed."""

    def __init__(self, enabled: bool = True):
        self._fns = _nvtx_push_pop() if enabled else None

    @property
    def active(self) -> bool:
        return self._fns is not None

    @contextlib.contextmanager
    def range(self, name: str) -> Iterator[None]:
        if self._fns is None:
            yield
            return
        push, pop = self._fns
        push(f"p2phd/{name}")
        try:
            yield
        finally:
            pop()


class CudaEventTimer:
    """Times work enqueued on a CUDA stream with a pair of events (milliseconds, device clock)."""

    def __init__(self, stream: int):
        self.cuda = _cudart()
        self.stream = stream
        self.start = _ok(self.cuda.cudaEventCreate())
        self.end = _ok(self.cuda.cudaEventCreate())

    def time_ms(self, fn: Callable[[], object]) -> tuple[object, float]:
        """Run `fn` (which enqueues on the stream and may synchronise) and time it on the GPU."""
        cuda = self.cuda
        _ok(cuda.cudaEventRecord(self.start, self.stream))
        result = fn()
        _ok(cuda.cudaEventRecord(self.end, self.stream))
        _ok(cuda.cudaEventSynchronize(self.end))
        return result, float(_ok(cuda.cudaEventElapsedTime(self.start, self.end)))

    def close(self) -> None:
        self.cuda.cudaEventDestroy(self.start)
        self.cuda.cudaEventDestroy(self.end)


def stream_of(backend) -> int | None:
    """The CUDA stream a backend enqueues on (TensorRT exposes it), else None."""
    stream = getattr(backend, "stream", None)
    return None if stream is None else int(stream)


def device_memory_used() -> int | None:
    """Bytes in use on CUDA device 0 (all processes), or None without CUDA."""
    try:
        free, total = _ok(_cudart().cudaMemGetInfo())
    except (ImportError, RuntimeError):
        return None
    return int(total) - int(free)


def describe_gpu() -> dict | None:
    """Name, compute capability, SMs, clock and memory of CUDA device 0, or None."""
    try:
        cudart = _cudart()
        if _ok(cudart.cudaGetDeviceCount()) == 0:
            return None
        props = _ok(cudart.cudaGetDeviceProperties(0))
        attr = cudart.cudaDeviceAttr
        clock_khz = _ok(cudart.cudaDeviceGetAttribute(attr.cudaDevAttrClockRate, 0))
    except (ImportError, RuntimeError):
        return None
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {
        "name": name.rstrip("\x00"),
        "capability": f"{props.major}.{props.minor}",
        "sms": int(props.multiProcessorCount),
        "clock_khz": int(clock_khz),
        "memory_gib": round(props.totalGlobalMem / 2**30, 1),
    }


def tensorrt_layer_times(backend, x: np.ndarray, runs: int = 5) -> list[dict]:
    """Per-layer times (mean ms over `runs`) of a TensorRT backend's engine on input `x`.

    Uses a second execution context with an IProfiler attached (profiling needs plain
    enqueues, not the backend's CUDA graphs): its input is the backend's device input buffer,
    its output a buffer of our own.
    """
    import tensorrt as trt

    totals: dict[str, float] = {}

    class Profiler(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            totals[layer_name] = totals.get(layer_name, 0.0) + ms

    batch, _, h, w = x.shape
    backend.infer(x)  # fills the device input buffer at this shape
    dev_in, stream = backend.input_pointer(batch, h, w)
    cuda = _cudart()
    dev_out = _ok(cuda.cudaMalloc(batch * 3 * h * w * backend.out_dtype.itemsize))
    context = backend.engine.create_execution_context()
    profiler = Profiler()  # held here: the context keeps only a pointer to it
    try:
        context.profiler = profiler
        context.set_input_shape(backend.input_name, tuple(x.shape))
        context.set_tensor_address(backend.input_name, dev_in)
        context.set_tensor_address(backend.output_name, int(dev_out))
        for _ in range(runs):
            if not context.execute_async_v3(stream):
                raise RuntimeError("tensorrt: execute_async_v3 failed under the profiler")
            _ok(cuda.cudaStreamSynchronize(stream))
    finally:
        del context
        cuda.cudaFree(dev_out)
    rows = [{"layer": k, "mean_ms": round(v / runs, 4)} for k, v in totals.items()]
    return sorted(rows, key=lambda r: -r["mean_ms"])
