"""The CUDA kernels on device memory: launched through the CUDA driver API from Python.

The TensorRT backend uses these to write the generator input straight into its device input
buffer and to convert its device output. Instance-id compaction stays on the CPU
(`p2phd.engine.kernels.compact_instances`); boundaries, pooling, input assembly and output
conversion run on the GPU with the same per-element arithmetic as the CPU kernels.

The kernels (`csrc/kernels_cuda.cu`) are compiled at first use by NVRTC for the GPU's exact
architecture and cached (`p2phd.engine.kernels.cubin`); the host side lives here: grid sizes,
workspace, argument packing and the launches (cuModuleLoadData, cuLaunchKernel). Nothing is
built at install time, so the kernels load on any CUDA 12 driver (R525+) and newer.

Device buffers are `DeviceArray`s (pointer, shape, dtype) or any object exposing
`__cuda_array_interface__` (torch, CuPy, Numba). Every call enqueues work on `stream` (a
CUstream / cudaStream_t as int; 0 is the default stream) and returns without waiting, except
`assemble_input(..., status=...)`, which waits to report bad labels.

`Kernels` holds the launch logic over any `Device`; the module's functions use the GPU (device
0's primary context, or the context current on the calling thread). The tests also run it over
a CPU emulation of the launch grid (tests/kernels/emulation).
"""

from __future__ import annotations

import ctypes
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from p2phd.common.errors import BackendUnavailable, InputError, P2PHDError
from p2phd.engine.core import cuda_runtime
from p2phd.engine.kernels import DTYPES, cubin

__all__ = [
    "DeviceArray",
    "Kernels",
    "assemble_input",
    "available",
    "instance_boundaries",
    "instance_pool",
    "pool_workspace_bytes",
    "to_uint8_rgb",
    "unavailable_reason",
]

THREADS = 256  # threads per block
MAX_BLOCKS = 1 << 20  # grid cap: every kernel loops over the grid, so any size is covered
POOL_STRIP = 64  # pixels of a row one pooling thread sums (kStrip in the .cu); sizes the grid
_NO_ERROR = 2**64 - 1

# The kernels' parameters, in order, as declared in kernels_cuda.cu (extern "C" entry points).
_P, _I64, _I32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
_SUFFIX = {DTYPES[name][0]: suffix for name, suffix in
           (("float32", "f32"), ("float16", "f16"), ("bfloat16", "bf16"))}  # fmt: skip
SIGNATURES: dict[str, tuple[type, ...]] = {
    "p2phd_boundaries": (_P, _I64, _I64, _I64, _P),
    "p2phd_pool_sums": (_P, _P, _I64, _I64, _I64, _I64, _I64, _P, _P),
    "p2phd_pool_means": (_P, _P, _I64, _I64, _I64, _P),
    "p2phd_pool_broadcast": (_P, _P, _I64, _I64, _I64, _I64, _I64, _P),
    **{
        f"p2phd_assemble_{s}": (_P, _P, _P, _I64, _I64, _I64, _I32, _I32, _I64, _I64, _P, _P)
        for s in _SUFFIX.values()
    },
    **{f"p2phd_rgb_{s}": (_P, _I64, _I64, _I64, _P) for s in _SUFFIX.values()},
}


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

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


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


class KernelParams:
    """cuLaunchKernel's `kernelParams`: an array of pointers, one to each argument's value, the
    values typed as the kernel declares them (SIGNATURES)."""

    def __init__(self, kernel: str, args: tuple):
        self.values = [t(v) for t, v in zip(SIGNATURES[kernel], args, strict=True)]
        self.pointers = (ctypes.c_void_p * len(self.values))(
            *[ctypes.addressof(v) for v in self.values]
        )

    @property
    def address(self) -> int:
        """The address of the pointer array (valid while this object lives)."""
        return ctypes.addressof(self.pointers)


class Device(Protocol):
    """Where kernels run: the GPU (`_Gpu`) or, in the tests, a CPU emulation of the grid."""

    def launch(self, kernel: str, blocks: int, threads: int, params: int, stream: int) -> None:
        """Enqueue `kernel` on a grid of `blocks` x `threads` with a kernelParams address."""

    def memset(self, ptr: int, value: int, nbytes: int, stream: int) -> None:
        """Enqueue setting `nbytes` bytes at `ptr` to `value`."""

    def read(self, ptr: int, nbytes: int, stream: int) -> bytes:
        """Copy `nbytes` at `ptr` to the host once the stream's work is done."""


class Kernels:
    """The kernels' host side over a `Device`: checks buffers, sizes grids, packs arguments.

    Grids have ceil(work / threads) blocks of `threads`, capped at `max_blocks`; the kernels
    loop over the grid, so a capped grid computes the same result.
    """

    def __init__(
        self, device: Callable[[], Device], threads: int = THREADS, max_blocks: int = MAX_BLOCKS
    ):
        self._device = device
        self.threads = threads
        self.max_blocks = max_blocks

    def _launch(self, kernel: str, work: int, args: tuple, stream: int) -> None:
        if work <= 0:
            return
        blocks = min(-(-work // self.threads), self.max_blocks)
        params = KernelParams(kernel, args)
        self._device().launch(kernel, blocks, self.threads, params.address, stream)

    def instance_boundaries(self, ids: Any, out: Any, stream: int = 0) -> None:
        """Boundary map uint8 [B,H,W] (0/1) of int32 ids [B,H,W] (compact or original)."""
        a = _array(ids, "ids", (np.int32,), (None, None, None))
        o = _array(out, "out", (np.uint8,), a.shape)
        self._launch("p2phd_boundaries", int(np.prod(a.shape)), (a.ptr, *a.shape, o.ptr), stream)

    @staticmethod
    def pool_workspace_bytes(batch: int, channels: int, kmax: int) -> int:
        """Bytes of device workspace `instance_pool` needs (float64 sums and pixel counts)."""
        return batch * kmax * (channels + 1) * 8

    def instance_pool(
        self,
        features: Any,
        ids: Any,
        kmax: int,
        means: Any,
        broadcast: Any | None,
        workspace: Any,
        stream: int = 0,
    ) -> None:
        """Per-instance means [B,kmax,C] of features [B,C,H,W] and, optionally, the broadcast
        map [B,C,H,W]. `workspace` is a device buffer of at least `pool_workspace_bytes(B, C,
        kmax)` bytes. Ids outside [0, kmax) are skipped (their pixels get 0 in the map)."""
        f = _array(features, "features", (np.float32,), (None, None, None, None))
        b, c, h, w = f.shape
        i = _array(ids, "ids", (np.int32,), (b, h, w))
        m = _array(means, "means", (np.float32,), (b, kmax, c))
        map_ptr = None
        if broadcast is not None:
            map_ptr = _array(broadcast, "broadcast", (np.float32,), f.shape).ptr
        ws = DeviceArray.of(workspace, "workspace")
        need = self.pool_workspace_bytes(b, c, kmax)
        if ws.nbytes < need:
            raise InputError(f"workspace: needs {need} bytes, got {ws.nbytes}")
        if b * kmax * c == 0:
            return
        sums, counts = ws.ptr, ws.ptr + b * kmax * c * 8
        self._device().memset(ws.ptr, 0, need, stream)
        strips = b * h * -(-w // POOL_STRIP)
        self._launch(
            "p2phd_pool_sums", strips, (f.ptr, i.ptr, b, c, h, w, kmax, sums, counts), stream
        )
        self._launch("p2phd_pool_means", b * kmax * c, (sums, counts, b, c, kmax, m.ptr), stream)
        if map_ptr is not None:
            args = (m.ptr, i.ptr, b, c, h, w, kmax, map_ptr)
            self._launch("p2phd_pool_broadcast", b * h * w, args, stream)

    def assemble_input(
        self,
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

        As `p2phd.engine.kernels.assemble_input`, on device: `labels` uint8 [B,H,W], `ids`
        compact int32 [B,H,W], `table` float32 [B,kmax,F] or None (then `feat_channels` zero
        channels). The element type of `out` (float32, float16 or bfloat16) selects the output
        type. With a `status` buffer (2 x uint64, device) the call waits for the stream and
        raises InputError for a label >= label_nc or an id outside [0, kmax); without one it
        does not wait.
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
        o = _array(out, "out", tuple(_SUFFIX), shape)
        status_ptr = None
        if status is not None:
            status_ptr = _array(status, "status", (np.uint64,), (2,)).ptr
            self._device().memset(status_ptr, 0xFF, 16, stream)
        args = (lab.ptr, ids_ptr, table_ptr, b, h, w, label_nc, int(edges), feat, kmax, o.ptr)
        kernel = f"p2phd_assemble_{_SUFFIX[o.dtype]}"
        self._launch(kernel, b * h * w, (*args, status_ptr), stream)
        if status_ptr is None:
            return
        found = np.frombuffer(self._device().read(status_ptr, 16, stream), np.uint64)
        if found[0] != _NO_ERROR:
            image, pixel = divmod(int(found[0]), h * w)
            y, x = divmod(pixel, w)
            raise InputError(
                f"labels: a value >= label_nc={label_nc} at image {image} of the batch, "
                f"pixel (y={y}, x={x})"
            )
        if found[1] != _NO_ERROR:
            raise InputError(f"ids: an id outside 0..{kmax - 1} (Kmax) at pixel index {found[1]}")

    def to_uint8_rgb(self, output: Any, rgb: Any, stream: int = 0) -> None:
        """Generator output [B,3,H,W] (f32/f16/bf16, device) -> uint8 RGB [B,H,W,3] (device)."""
        o = _array(output, "output", tuple(_SUFFIX), (None, 3, None, None))
        b, _, h, w = o.shape
        r = _array(rgb, "rgb", (np.uint8,), (b, h, w, 3))
        kernel = f"p2phd_rgb_{_SUFFIX[o.dtype]}"
        self._launch(kernel, b * h * w, (o.ptr, b, h, w, r.ptr), stream)


class _Gpu:
    """The kernels on the GPU through the CUDA driver API: the cubin loaded once per context."""

    def __init__(self, image: bytes, primary_context):
        self._image = image
        self._primary = primary_context  # device 0's, made current where no context is
        self._functions: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def functions(self) -> dict[str, Any]:
        """The kernels (CUfunction by name) in the calling thread's context, making device 0's
        primary context current where the thread has none (every driver call needs one)."""
        drv, check = cuda_runtime.driver(), cuda_runtime.check
        context = check(drv.cuCtxGetCurrent())
        if int(context) == 0:
            check(drv.cuCtxSetCurrent(self._primary))
            context = self._primary
        found = self._functions.get(int(context))
        if found is None:
            with self._lock:  # one module per context, loaded by the first thread to need it
                found = self._functions.get(int(context))
                if found is None:
                    module = check(drv.cuModuleLoadData(self._image))
                    found = {
                        k: check(drv.cuModuleGetFunction(module, k.encode())) for k in SIGNATURES
                    }
                    self._functions[int(context)] = found
        return found

    def launch(self, kernel: str, blocks: int, threads: int, params: int, stream: int) -> None:
        f = self.functions()[kernel]
        _enqueue(
            kernel,
            cuda_runtime.driver().cuLaunchKernel(
                f, blocks, 1, 1, threads, 1, 1, 0, stream, params, 0
            ),
        )

    def memset(self, ptr: int, value: int, nbytes: int, stream: int) -> None:
        self.functions()  # a current context
        _enqueue(
            "cuMemsetD8Async", cuda_runtime.driver().cuMemsetD8Async(ptr, value, nbytes, stream)
        )

    def read(self, ptr: int, nbytes: int, stream: int) -> bytes:
        self.functions()  # a current context
        drv = cuda_runtime.driver()
        host = (ctypes.c_uint8 * nbytes)()
        _enqueue(
            "cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync(ctypes.addressof(host), ptr, nbytes, stream)
        )
        _enqueue("cuStreamSynchronize", drv.cuStreamSynchronize(stream))
        return bytes(host)


def _enqueue(what: str, result) -> None:
    try:
        cuda_runtime.check(result)
    except cuda_runtime.CudaError as e:
        raise P2PHDError(f"CUDA kernels: {what} failed: {e}") from e


@functools.cache
def _gpu() -> _Gpu | BackendUnavailable:
    """The GPU with the kernels loaded, or why not (found once per process)."""
    try:
        drv = cuda_runtime.driver()
    except ImportError as e:
        return BackendUnavailable(
            f"CUDA kernels: cuda-python is not installed ({e}); pip install 'p2phd[gpu]'"
        )
    check = cuda_runtime.check
    try:
        check(drv.cuInit(0))
    except cuda_runtime.CudaError as e:  # CUDA_ERROR_NO_DEVICE where the driver sees no GPU
        return BackendUnavailable(f"CUDA kernels: the NVIDIA driver cannot start: {e}")
    except Exception as e:  # cuda-python raises its own error type when libcuda is missing
        return BackendUnavailable(f"CUDA kernels: no NVIDIA driver (libcuda.so.1: {e})")
    try:
        version = check(drv.cuDriverGetVersion())
        if version < 12000:
            return BackendUnavailable(
                "CUDA kernels: the NVIDIA driver supports CUDA "
                f"{cuda_runtime.version_text(version)}; they need a CUDA 12 driver (R525 or newer)"
            )
        device = check(drv.cuDeviceGet(0))
        attr = drv.CUdevice_attribute
        arch = tuple(
            check(drv.cuDeviceGetAttribute(a, device))
            for a in (
                attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
            )
        )
        gpu = _Gpu(cubin.cubin(arch, version), check(drv.cuDevicePrimaryCtxRetain(device)))
        gpu.functions()  # load now, so a cubin the driver refuses is reported here
    except BackendUnavailable as e:
        return e
    except cuda_runtime.CudaError as e:
        return BackendUnavailable(f"CUDA kernels: cannot load on the GPU: {e}")
    return gpu


def _loaded() -> _Gpu:
    found = _gpu()
    if isinstance(found, BackendUnavailable):
        raise BackendUnavailable(str(found))
    return found


def unavailable_reason() -> str | None:
    """Why the CUDA kernels cannot run here (cuda-python, driver, GPU, NVRTC or compile error
    with its log), or None."""
    found = _gpu()
    return str(found) if isinstance(found, BackendUnavailable) else None


def available() -> bool:
    """True when a GPU is visible and the kernels compiled and loaded on it."""
    return unavailable_reason() is None


_ON_GPU = Kernels(_loaded)
instance_boundaries = _ON_GPU.instance_boundaries
pool_workspace_bytes = Kernels.pool_workspace_bytes
instance_pool = _ON_GPU.instance_pool
assemble_input = _ON_GPU.assemble_input
to_uint8_rgb = _ON_GPU.to_uint8_rgb
