"""A double of the CUDA driver API calls p2phd.engine.kernels.cuda makes, for machines without
a GPU: cuda-python's names, argument order and (error, *values) returns, with launches run by
the CPU emulation of the launch grid and "device memory" in host memory.

It tests our control flow (setup, the checks that name what is missing, contexts, module
loading, launch arguments, status read-back), not CUDA: the `gpu` tests still need a GPU.
"""

from __future__ import annotations

import ctypes
import threading
from types import SimpleNamespace

import numpy as np

from p2phd.engine.kernels import cubin


class DriverError(int):
    """A CUresult as cuda-python returns it: an int enum with a name."""

    def __new__(cls, value: int, name: str):
        err = super().__new__(cls, value)
        err.name = name
        return err


class DriverDouble:
    """`init` is cuInit's error, or an exception it raises (no libcuda); `version` is
    cuDriverGetVersion's (12020: CUDA 12.2, R535); `arch` the device's compute capability."""

    CUdevice_attribute = SimpleNamespace(
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76,
    )
    PRIMARY_CONTEXT = 0xC0DE

    def __init__(self, emulator=None, init=0, version=12020, arch=(9, 0)):
        self.emulator = emulator
        self.init, self.version, self.arch = init, version, arch
        self.modules: list[tuple[int, bytes]] = []  # (context, image) per cuModuleLoadData
        self.allocations: dict[int, np.ndarray] = {}  # device memory is host memory
        self._current = threading.local()

    def cuInit(self, Flags):
        if isinstance(self.init, Exception):
            raise self.init
        return (self.init,)

    def cuDriverGetVersion(self):
        return 0, self.version

    def cuDeviceGet(self, ordinal):
        return 0, ordinal

    def cuDeviceGetAttribute(self, attrib, dev):
        return 0, self.arch[attrib - 75]

    def cuDevicePrimaryCtxRetain(self, dev):
        return 0, self.PRIMARY_CONTEXT

    def cuCtxGetCurrent(self):
        return 0, getattr(self._current, "context", 0)

    def cuCtxSetCurrent(self, ctx):
        self._current.context = ctx
        return (0,)

    def cuModuleLoadData(self, image):
        if not image.startswith(cubin.ELF_MAGIC):
            return (DriverError(200, "CUDA_ERROR_INVALID_IMAGE"),)
        self.modules.append((self.cuCtxGetCurrent()[1], image))
        return 0, len(self.modules)

    def cuModuleGetFunction(self, hmod, name):
        if self.emulator.signature(name.decode()) is None:
            return (DriverError(500, "CUDA_ERROR_NOT_FOUND"),)
        return 0, name.decode()

    def cuLaunchKernel(
        self, f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes,
        hStream, kernelParams, extra,
    ):  # fmt: skip
        assert (gridDimY, gridDimZ, blockDimY, blockDimZ, sharedMemBytes, extra) == (
            1,
            1,
            1,
            1,
            0,
            0,
        )
        self.emulator.launch(f, gridDimX, blockDimX, kernelParams, hStream)
        return (0,)

    def cuMemsetD8Async(self, dstDevice, uc, N, hStream):
        ctypes.memset(dstDevice, uc, N)
        return (0,)

    def cuMemcpyDtoHAsync(self, dstHost, srcDevice, ByteCount, hStream):
        ctypes.memmove(dstHost, srcDevice, ByteCount)
        return (0,)

    def cuStreamSynchronize(self, hStream):
        return (0,)

    def cuCtxSynchronize(self):
        return (0,)

    # Device memory, for tests that allocate their buffers through the driver.
    def cuMemAlloc(self, bytesize):
        buffer = np.empty(bytesize, np.uint8)
        self.allocations[buffer.ctypes.data] = buffer
        return 0, buffer.ctypes.data

    def cuMemFree(self, dptr):
        return (
            (0,)
            if self.allocations.pop(int(dptr), None) is not None
            else (DriverError(1, "CUDA_ERROR_INVALID_VALUE"),)
        )

    def cuMemsetD8(self, dstDevice, uc, N):
        return self.cuMemsetD8Async(dstDevice, uc, N, 0)

    def cuMemcpyHtoD(self, dstDevice, srcHost, ByteCount):
        ctypes.memmove(dstDevice, srcHost, ByteCount)
        return (0,)

    def cuMemcpyDtoH(self, dstHost, srcDevice, ByteCount):
        return self.cuMemcpyDtoHAsync(dstHost, srcDevice, ByteCount, 0)
