"""The CUDA kernels on device memory (ctypes over libp2phd_kernels_cuda.so).

The TensorRT backend uses these to write the generator input straight into its device input
buffer and to convert its device output. Instance-id compaction stays on the CPU
(`p2phd.engine.kernels.compact_instances`); boundaries, pooling, input assembly and output
conversion run on the GPU with the same per-element arithmetic as the CPU kernels.

Device buffers are `DeviceArray`s (pointer, shape, dtype) or any object exposing
`__cuda_array_interface__` (torch, CuPy, Numba). Every call enqueues work on `stream` (a
cudaStream_t as int; 0 is the default stream) and returns without waiting, except
`assemble_input(..., status=...)`, which waits to report bad labels.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.engine.errors import BackendUnavailable, InputError, P2PHDError
from p2phd.engine.kernels import DTYPES, _native

__all__ = [
    "DeviceArray",
    "assemble_input",
    "available",
    "instance_boundaries",
    "instance_pool",
    "pool_workspace_bytes",
    "to_uint8_rgb",
    "unavailable_reason",
]

# Installed next to the CPU module (in an editable install that is site-packages, not engine/).
LIBRARY = Path(_native.__file__).with_name("libp2phd_kernels_cuda.so")
_CODES = {np_dtype: code for np_dtype, code in DTYPES.values()}
_NO_ERROR = 2**64 - 1
_CUDA_ERROR_INSUFFICIENT_DRIVER = 35  # also what the runtime reports when there is no driver


@dataclass(frozen=True)
class DeviceArray:
    """A C-contiguous device buffer: its address, shape and element type."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def of(cls, obj: Any, name: str) -> DeviceArray:
        """`obj` itself, or the buffer behind its `__cuda_array_interface__` (C-contiguous)."""
        if isinstance(obj, DeviceArray):
            return obj
        face = getattr(obj, "__cuda_array_interface__", None)
        if face is None:
            raise InputError(f"{name}: expected a device array, got {type(obj).__name__}")
        shape = tuple(face["shape"])
        dtype = np.dtype(face["typestr"])
        strides = face.get("strides")
        if strides is not None and tuple(strides) != _c_strides(shape, dtype.itemsize):
            raise InputError(f"{name}: expected a C-contiguous device array")
        return cls(int(face["data"][0]), shape, dtype)


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


def _array(obj: Any, name: str, dtypes: tuple, shape: tuple[int | None, ...]) -> DeviceArray:
    """The device array `obj`, checked against element types and a shape (None: any size)."""
    a = DeviceArray.of(obj, name)
    if a.dtype not in [np.dtype(d) for d in dtypes]:
        expected = " or ".join(np.dtype(d).name for d in dtypes)
        raise InputError(f"{name}: expected dtype {expected}, got {a.dtype}")
    if len(a.shape) != len(shape) or any(
        want is not None and got != want for got, want in zip(a.shape, shape, strict=True)
    ):
        wanted = tuple("?" if n is None else n for n in shape)
        raise InputError(f"{name}: expected shape {wanted}, got {a.shape}")
    return a


@functools.cache
def _library() -> ctypes.CDLL:
    """The loaded CUDA kernels library, once a GPU is known to be visible."""
    if not LIBRARY.exists():
        raise BackendUnavailable(
            f"CUDA kernels: {LIBRARY.name} was not built (nvcc was not on PATH when p2phd was "
            "installed); reinstall on a machine with the CUDA toolkit"
        )
    try:
        lib = ctypes.CDLL(str(LIBRARY))
    except OSError as e:
        raise BackendUnavailable(f"CUDA kernels: cannot load {LIBRARY}: {e}") from e
    i64, ptr, c_int = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    signatures = {
        "p2phd_cuda_device_count": [ctypes.POINTER(c_int)],
        "p2phd_cuda_instance_boundaries": [ptr, i64, i64, i64, ptr, ptr],
        "p2phd_cuda_instance_pool": [ptr, ptr, i64, i64, i64, i64, i64, ptr, ptr, ptr, ptr],
        "p2phd_cuda_assemble_input": [ptr, ptr, ptr, i64, i64, i64, c_int, c_int, i64, i64]
        + [c_int, ptr, ptr, ptr],
        "p2phd_cuda_read_status": [ptr, ptr, ptr],
        "p2phd_cuda_to_uint8_rgb": [ptr, c_int, i64, i64, i64, ptr, ptr],
    }
    for name, argtypes in signatures.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = c_int
    lib.p2phd_cuda_error_string.argtypes = [c_int]
    lib.p2phd_cuda_error_string.restype = ctypes.c_char_p
    lib.p2phd_cuda_instance_pool_workspace_bytes.argtypes = [i64, i64, i64]
    lib.p2phd_cuda_instance_pool_workspace_bytes.restype = i64
    count = ctypes.c_int(0)
    err = lib.p2phd_cuda_device_count(ctypes.byref(count))
    if err or count.value == 0:
        reason = lib.p2phd_cuda_error_string(err).decode() if err else "no CUDA device"
        if err == _CUDA_ERROR_INSUFFICIENT_DRIVER and not _driver_present():
            reason = "no NVIDIA driver: libcuda.so.1 not found"
        raise BackendUnavailable(f"CUDA kernels: no usable GPU ({reason})")
    return lib


def _driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def _check(err: int) -> None:
    if err:
        reason = _library().p2phd_cuda_error_string(err).decode()
        raise P2PHDError(f"CUDA kernels: launch failed: {reason} (cudaError {err})")


def unavailable_reason() -> str | None:
    """Why the CUDA kernels cannot run here (library not built, no driver or GPU), or None."""
    try:
        _library()
    except BackendUnavailable as e:
        return str(e)
    return None


def available() -> bool:
    """True when the CUDA kernels library is built and a GPU is visible."""
    return unavailable_reason() is None


def instance_boundaries(ids: Any, out: Any, stream: int = 0) -> None:
    """Boundary map uint8 [B,H,W] (0/1) of int32 ids [B,H,W] (compact or original)."""
    a = _array(ids, "ids", (np.int32,), (None, None, None))
    o = _array(out, "out", (np.uint8,), a.shape)
    _check(_library().p2phd_cuda_instance_boundaries(a.ptr, *a.shape, o.ptr, stream))


def pool_workspace_bytes(batch: int, channels: int, kmax: int) -> int:
    """Bytes of device workspace `instance_pool` needs (float64 sums and pixel counts)."""
    return int(_library().p2phd_cuda_instance_pool_workspace_bytes(batch, channels, kmax))


def instance_pool(
    features: Any,
    ids: Any,
    kmax: int,
    means: Any,
    broadcast: Any | None,
    workspace: Any,
    stream: int = 0,
) -> None:
    """Per-instance means [B,kmax,C] of features [B,C,H,W] and, optionally, the broadcast map.

    `workspace` is a device buffer of at least `pool_workspace_bytes(B, C, kmax)` bytes.
    """
    f = _array(features, "features", (np.float32,), (None, None, None, None))
    b, c, h, w = f.shape
    i = _array(ids, "ids", (np.int32,), (b, h, w))
    m = _array(means, "means", (np.float32,), (b, kmax, c))
    map_ptr = None
    if broadcast is not None:
        map_ptr = _array(broadcast, "broadcast", (np.float32,), f.shape).ptr
    ws = DeviceArray.of(workspace, "workspace")
    if int(np.prod(ws.shape)) * ws.dtype.itemsize < pool_workspace_bytes(b, c, kmax):
        raise InputError(f"workspace: needs {pool_workspace_bytes(b, c, kmax)} bytes")
    lib = _library()
    _check(
        lib.p2phd_cuda_instance_pool(f.ptr, i.ptr, b, c, h, w, kmax, m.ptr, map_ptr, ws.ptr, stream)
    )


def assemble_input(
    labels: Any,
    ids: Any | None,
    table: Any | None,
    label_nc: int,
    edges: bool,
    out: Any,
    *,
    kmax: int = 0,
    feat_channels: int = 0,
    status: Any | None = None,
    stream: int = 0,
) -> None:
    """Write the generator input [B, label_nc + edges + F, H, W] into the device buffer `out`.

    As `p2phd.engine.kernels.assemble_input`, on device: `labels` uint8 [B,H,W], `ids` compact
    int32 [B,H,W], `table` float32 [B,kmax,F] or None (then `feat_channels` zero channels).
    The element type of `out` (float32, float16 or bfloat16) selects the output type. With a
    `status` buffer (2 x uint64, device) the call waits for the stream and raises InputError for
    a label >= label_nc or an id outside [0, kmax); without one it does not wait.
    """
    lab = _array(labels, "labels", (np.uint8,), (None, None, None))
    b, h, w = lab.shape
    ids_ptr = table_ptr = None
    if ids is not None:
        ids_ptr = _array(ids, "ids", (np.int32,), lab.shape).ptr
    elif edges or table is not None:
        raise InputError("ids: instance ids are required for edges or a feature table")
    feat = feat_channels
    if table is not None:
        t = _array(table, "table", (np.float32,), (b, kmax, None))
        feat, table_ptr = t.shape[2], t.ptr
    shape = (b, label_nc + int(edges) + feat, h, w)
    o = _array(out, "out", tuple(_CODES), shape)
    status_ptr = None
    if status is not None:
        status_ptr = _array(status, "status", (np.uint64,), (2,)).ptr
    lib = _library()
    _check(
        lib.p2phd_cuda_assemble_input(
            lab.ptr, ids_ptr, table_ptr, b, h, w, label_nc, int(edges), feat, kmax,
            _CODES[o.dtype], o.ptr, status_ptr, stream,
        )
    )  # fmt: skip
    if status_ptr is None:
        return
    found = (ctypes.c_uint64 * 2)()
    _check(lib.p2phd_cuda_read_status(status_ptr, found, stream))
    if found[0] != _NO_ERROR:
        y, x = divmod(found[0] % (h * w), w)
        raise InputError(
            f"labels: a value >= label_nc={label_nc} at image {found[0] // (h * w)} of the "
            f"batch, pixel (y={y}, x={x})"
        )
    if found[1] != _NO_ERROR:
        raise InputError(f"ids: an id outside 0..{kmax - 1} (Kmax) at pixel index {found[1]}")


def to_uint8_rgb(output: Any, rgb: Any, stream: int = 0) -> None:
    """Generator output [B,3,H,W] (f32/f16/bf16, device) -> uint8 RGB [B,H,W,3] (device)."""
    o = _array(output, "output", tuple(_CODES), (None, 3, None, None))
    b, _, h, w = o.shape
    r = _array(rgb, "rgb", (np.uint8,), (b, h, w, 3))
    _check(_library().p2phd_cuda_to_uint8_rgb(o.ptr, _CODES[o.dtype], b, h, w, r.ptr, stream))
