"""GPU instrumentation for the benchmark: CUDA-event timing and NVTX ranges.

Everything here is optional at import: without CUDA, `nvtx` or TensorRT the helpers fall back to
no-ops (NVTX), wall-clock timing, or report nothing, so the CPU benchmark never needs them.
NVTX ranges are named "p2phd/<stage>" so an Nsight Systems timeline shows the pipeline stages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from p2phd.engine.core.cuda_runtime import check as _ok
from p2phd.engine.core.cuda_runtime import runtime as _cudart


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
    """A pair of CUDA events on a stream: the device time (ms) between the two records.

    The backend records them itself, around its device work only (uploads, engine, downloads):
    events bracketing host work would measure the host too, since an event on an idle stream
    completes when the host records it.
    """

    def __init__(self, stream: int):
        self.cuda = _cudart()
        self.stream = stream
        self.start = _ok(self.cuda.cudaEventCreate())
        self.end = _ok(self.cuda.cudaEventCreate())

    def record_start(self) -> None:
        _ok(self.cuda.cudaEventRecord(self.start, self.stream))

    def record_end(self) -> None:
        _ok(self.cuda.cudaEventRecord(self.end, self.stream))

    def elapsed_ms(self) -> float:
        """Milliseconds from the start record to the end record, once the end has completed."""
        _ok(self.cuda.cudaEventSynchronize(self.end))
        return float(_ok(self.cuda.cudaEventElapsedTime(self.start, self.end)))

    def close(self) -> None:
        self.cuda.cudaEventDestroy(self.start)
        self.cuda.cudaEventDestroy(self.end)


def device_timer(backend) -> CudaEventTimer | None:
    """A CudaEventTimer installed in a backend that records one around its device work
    (TensorRT: `device_timer`), else None. Remove it with `backend.device_timer = None`."""
    if not hasattr(backend, "device_timer") or getattr(backend, "stream", None) is None:
        return None
    backend.device_timer = CudaEventTimer(int(backend.stream))
    return backend.device_timer


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
    gpu = {
        "name": name.rstrip("\x00"),
        "capability": f"{props.major}.{props.minor}",
        "sms": int(props.multiProcessorCount),
        "clock_khz": int(clock_khz),
        "memory_gib": round(props.totalGlobalMem / 2**30, 1),
    }
    if getattr(cudart, "__p2phd_double__", False):  # the tests' CUDA double: not a GPU
        gpu["test_double"] = True
    return gpu
