"""cuda-python, found once: the CUDA runtime, driver and NVRTC modules and the error check.

cuda-python 12.6+ names them `cuda.bindings.{runtime,driver,nvrtc}`; older 12.x releases
`cuda.{cudart,cuda,nvrtc}`. Every call returns a tuple (err, *values); `check` unpacks it.
Everything GPU-side (the TensorRT backend, the CUDA kernels, the GPU bench harness) goes through
here, so one module decides which cuda-python is in use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_NAMES = {"runtime": "cudart", "driver": "cuda", "nvrtc": "nvrtc"}


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"cuda.bindings.{name}")
    except ImportError:
        return importlib.import_module(f"cuda.{_NAMES[name]}")


def runtime() -> ModuleType:
    """The CUDA runtime API (cudaMalloc, cudaStreamCreate, ...)."""
    return _module("runtime")


def driver() -> ModuleType:
    """The CUDA driver API (cuModuleLoadData, cuLaunchKernel, ...)."""
    return _module("driver")


def nvrtc() -> ModuleType:
    """The CUDA runtime compiler (nvrtcCreateProgram, ...)."""
    return _module("nvrtc")


def version_text(version: int) -> str:
    """A CUDA version as the API reports it (12040, from cudaRuntimeGetVersion or
    cuDriverGetVersion) in its usual form ("12.4")."""
    return f"{version // 1000}.{version % 1000 // 10}"


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call's error."""


def check(result):
    """Unpack a cuda-python (err, *values) result, raising CudaError on any error; returns
    None, the one value, or a tuple of values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaError(f"CUDA error {_error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _error_name(err) -> str:
    name = getattr(err, "name", None)
    return f"{name} ({int(err)})" if name else str(int(err))
