"""The CUDA kernels' public API against the CPU kernels, device buffers from cuda-python.

Each kernel test runs twice: as a `gpu` test on an NVIDIA GPU (cuda-python 12 and NVRTC, the
`gpu` extra; the kernels compile with NVRTC at first use and launch through the driver API),
and on any machine over a double of the driver whose launches run the kernels' own source on
the CPU (tests/kernels/emulator.py), so the test bodies and the host code are exercised before
any hardware. Device outputs are poisoned first, so a skipped element fails the comparison.
The other tests check the wrapper before any launch and that `unavailable_reason` names what
is missing.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from p2phd.common.errors import BackendUnavailable, InputError
from p2phd.engine import kernels
from p2phd.engine.core import cuda_runtime
from p2phd.engine.kernels import cubin, cuda
from tests.kernels.driver_double import DriverDouble, DriverError
from tests.kernels.emulator import Emulator

gpu = pytest.mark.gpu("CUDA kernels")

DTYPES = ["float32", "float16", "bfloat16"]
SHAPES = [(1, 1, 1), (1, 1, 7), (2, 5, 1), (3, 17, 23), (2, 64, 129)]


class FakeDeviceArray:
    """An object exposing __cuda_array_interface__ (address 0: the wrapper checks, never reads)."""

    def __init__(self, shape, dtype, strides=None):
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": np.dtype(dtype).str,
            "data": (0, False),
            "strides": strides,
            "version": 3,
        }


@pytest.mark.skipif(cuda.available(), reason="the CUDA kernels are usable here")
def test_without_a_gpu_the_wrapper_says_why():
    assert cuda.unavailable_reason().startswith("CUDA kernels: ")
    ids = FakeDeviceArray((1, 4, 4), np.int32)
    with pytest.raises(BackendUnavailable, match="CUDA kernels: "):
        cuda.instance_boundaries(ids, FakeDeviceArray((1, 4, 4), np.uint8))


def test_device_buffers_are_checked_before_any_launch():
    ids = FakeDeviceArray((1, 4, 4), np.int32)
    with pytest.raises(InputError, match=r"out: expected shape \(1, 4, 4\)"):
        cuda.instance_boundaries(ids, FakeDeviceArray((1, 4, 5), np.uint8))
    with pytest.raises(InputError, match="ids: expected dtype int32"):
        cuda.instance_boundaries(FakeDeviceArray((1, 4, 4), np.int64), ids)
    with pytest.raises(InputError, match="C-contiguous"):
        cuda.instance_boundaries(FakeDeviceArray((1, 4, 4), np.int32, (64, 4, 16)), ids)
    with pytest.raises(InputError, match="out: expected dtype"):
        labels = FakeDeviceArray((1, 4, 4), np.uint8)
        cuda.assemble_input(labels, None, None, 3, False, FakeDeviceArray((1, 3, 4, 4), np.int8))
    with pytest.raises(InputError, match="ids: instance ids are required"):
        cuda.assemble_input(labels, None, None, 3, True, FakeDeviceArray((1, 4, 4, 4), np.float32))


def reason_with(monkeypatch, driver=None, nvrtc=None) -> str | None:
    """`unavailable_reason()` with cuda-python's driver and NVRTC modules replaced."""
    if driver is not None:
        monkeypatch.setattr(cuda_runtime, "driver", driver)
    if nvrtc is not None:
        monkeypatch.setattr(cuda_runtime, "nvrtc", nvrtc)
    cuda._gpu.cache_clear()
    try:
        return cuda.unavailable_reason()
    finally:
        cuda._gpu.cache_clear()


def missing(module: str):
    def load():
        raise ImportError(f"No module named {module!r}")

    return load


def test_unavailable_reason_names_what_is_missing(monkeypatch):
    assert "cuda-python is not installed" in reason_with(monkeypatch, missing("cuda"))
    no_libcuda = DriverDouble(init=RuntimeError("libcuda.so.1 not found"))
    assert "no NVIDIA driver" in reason_with(monkeypatch, lambda: no_libcuda)
    no_device = DriverDouble(init=DriverError(100, "CUDA_ERROR_NO_DEVICE"))
    assert "CUDA_ERROR_NO_DEVICE (100)" in reason_with(monkeypatch, lambda: no_device)
    old = DriverDouble(version=11080)
    assert "supports CUDA 11.8; they need a CUDA 12 driver" in reason_with(monkeypatch, lambda: old)
    gpu = DriverDouble()
    no_nvrtc = reason_with(monkeypatch, lambda: gpu, missing("cuda.bindings.nvrtc"))
    assert "cuda-python is not installed" in no_nvrtc


def test_unavailable_reason_names_a_missing_nvrtc_library(monkeypatch):
    class NoLibrary:
        def nvrtcVersion(self):
            raise RuntimeError('"nvrtc" not found')

    reason = reason_with(monkeypatch, lambda: DriverDouble(), lambda: NoLibrary())
    assert "NVRTC not found" in reason and cubin.NVRTC_PACKAGE in reason


class DeviceMemory:
    """Device buffers through cuda-python's driver API (the gpu extra, no torch): uploads,
    poisoned outputs and downloads; everything is freed after the test."""

    def __init__(self, drv):
        self.drv = drv
        self.allocations: list[int] = []

    def _alloc(self, nbytes: int) -> int:
        ptr = int(cuda_runtime.check(self.drv.cuMemAlloc(max(nbytes, 1))))
        self.allocations.append(ptr)
        return ptr

    def upload(self, a: np.ndarray) -> cuda.DeviceArray:
        a = np.ascontiguousarray(a)
        ptr = self._alloc(a.nbytes)
        cuda_runtime.check(self.drv.cuMemcpyHtoD(ptr, a.ctypes.data, a.nbytes))
        return cuda.DeviceArray(ptr, a.shape, a.dtype)

    def poisoned(self, shape, dtype, byte: int = 0xFF) -> cuda.DeviceArray:
        """An output buffer filled with `byte` (0xFF: NaN in every float type)."""
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = self._alloc(nbytes)
        cuda_runtime.check(self.drv.cuMemsetD8(ptr, byte, nbytes))
        return cuda.DeviceArray(ptr, tuple(shape), dtype)

    def download(self, d: cuda.DeviceArray) -> np.ndarray:
        """The buffer's contents once all work on the device is done."""
        cuda_runtime.check(self.drv.cuCtxSynchronize())
        out = np.empty(d.shape, d.dtype)
        cuda_runtime.check(self.drv.cuMemcpyDtoH(out.ctypes.data, d.ptr, out.nbytes))
        return out

    def free(self) -> None:
        for ptr in self.allocations:
            cuda_runtime.check(self.drv.cuMemFree(ptr))


@pytest.fixture(params=[pytest.param("gpu", marks=gpu), "driver double"])
def memory(request, monkeypatch) -> DeviceMemory:
    """Device memory on the GPU (a `gpu` test), or, on any machine, host memory behind the
    driver double with the kernels run by the CPU emulation: the same test bodies run on both."""
    if request.param == "driver double":
        drv = DriverDouble(Emulator(request.getfixturevalue("emulation_library")))
        monkeypatch.setattr(cuda_runtime, "driver", lambda: drv)
        monkeypatch.setattr(cubin, "cubin", lambda arch, driver: cubin.ELF_MAGIC)
        cuda._gpu.cache_clear()
        request.addfinalizer(cuda._gpu.cache_clear)
    reason = cuda.unavailable_reason()
    assert reason is None, f"{reason} (pip install 'p2phd[gpu]' installs cuda-python and NVRTC)"
    cuda._loaded().functions()  # a current context on this thread for the allocations
    mem = DeviceMemory(cuda_runtime.driver())
    yield mem
    mem.free()


def maps(shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocky instance maps with ids up to 65535 (always one above 2048) and labels < 35."""
    rng = np.random.default_rng(seed)
    pool = np.append(rng.choice(65536, size=6, replace=False), 4097)
    b, h, w = shape
    small = rng.choice(pool, size=(b, -(-h // 3), -(-w // 3)))
    instances = small.repeat(3, 1).repeat(3, 2)[:, :h, :w].astype(np.int32)
    labels = rng.integers(0, 35, size=shape, dtype=np.uint8)
    return np.ascontiguousarray(instances), labels


@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_boundaries_equal_cpu(memory, shape):
    instances, _ = maps(shape, 0)
    out = memory.poisoned(shape, np.uint8, 0xAB)
    cuda.instance_boundaries(memory.upload(instances), out)
    np.testing.assert_array_equal(memory.download(out), kernels.instance_boundaries(instances))


@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_pooling_equals_cpu(memory, shape):
    instances, labels = maps(shape, 1)
    inst = kernels.compact_instances(instances, labels)
    b, h, w = shape
    features = np.random.default_rng(2).normal(size=(b, 3, h, w)).astype(np.float32)
    means = memory.poisoned((b, inst.kmax, 3), np.float32)
    broadcast = memory.poisoned((b, 3, h, w), np.float32)
    workspace = memory.poisoned((cuda.pool_workspace_bytes(b, 3, inst.kmax),), np.uint8)
    ids = memory.upload(inst.ids)
    cuda.instance_pool(memory.upload(features), ids, inst.kmax, means, broadcast, workspace)
    cpu_means, cpu_map = kernels.instance_pool(features, inst)
    np.testing.assert_allclose(memory.download(means), cpu_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(memory.download(broadcast), cpu_map, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", ["table", "zeros", "none"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_assembly_equals_cpu_bit_for_bit(memory, dtype, features, shape):
    instances, labels = maps(shape, 3)
    inst = kernels.compact_instances(instances, labels)
    b = shape[0]
    table = None
    if features == "table":
        table = np.random.default_rng(4).normal(size=(b, inst.kmax, 3)).astype(np.float32)
    feat_channels = 2 if features == "zeros" else 0
    expected = kernels.assemble_input(
        labels, inst, 35, True, table, dtype, feat_channels=feat_channels
    )
    out = memory.poisoned(expected.shape, expected.dtype)
    cuda.assemble_input(
        memory.upload(labels),
        memory.upload(inst.ids),
        None if table is None else memory.upload(table),
        35,
        True,
        out,
        kmax=inst.kmax,
        feat_channels=feat_channels,
        status=memory.poisoned((2,), np.uint64, 0),
    )
    bits = np.uint32 if dtype == "float32" else np.uint16
    np.testing.assert_array_equal(memory.download(out).view(bits), expected.view(bits))


def test_cuda_assembly_reports_a_label_at_or_above_label_nc(memory):
    labels = np.zeros((2, 4, 6), np.uint8)
    labels[1, 3, 2] = 9
    labels[1, 3, 5] = 200  # a later bad label must not win
    out = memory.poisoned((2, 9, 4, 6), np.float32)
    status = memory.poisoned((2,), np.uint64, 0)
    with pytest.raises(InputError, match=r"image 1 .*y=3, x=2"):
        cuda.assemble_input(memory.upload(labels), None, None, 9, False, out, status=status)


@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_capped_grids_equal_cpu(memory, shape):
    """Grids of fewer threads than pixels (2 blocks of 64): the grid-stride loops on the GPU."""
    capped = cuda.Kernels(cuda._loaded, threads=64, max_blocks=2)
    instances, labels = maps(shape, 8)
    inst = kernels.compact_instances(instances, labels)
    table = np.random.default_rng(9).normal(size=(shape[0], inst.kmax, 3)).astype(np.float32)
    expected = kernels.assemble_input(labels, inst, 35, True, table, "float16")
    out = memory.poisoned(expected.shape, expected.dtype)
    capped.assemble_input(
        memory.upload(labels), memory.upload(inst.ids), memory.upload(table), 35, True, out,
        kmax=inst.kmax,
    )  # fmt: skip
    rgb = memory.poisoned((*shape, 3), np.uint8, 0xAB)
    capped.to_uint8_rgb(memory.upload(expected[:, :3]), rgb)
    np.testing.assert_array_equal(memory.download(out).view(np.uint16), expected.view(np.uint16))
    np.testing.assert_array_equal(memory.download(rgb), kernels.to_uint8_rgb(expected[:, :3]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_uint8_conversion_equals_cpu(memory, dtype):
    rng = np.random.default_rng(5)
    values = rng.uniform(-1.2, 1.2, size=(2, 3, 31, 37)).astype(np.float32)
    values.reshape(-1)[:8] = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1.0, 7.0, -7.0]
    with np.errstate(over="ignore"):
        output = values.astype(kernels.DTYPES[dtype][0])
    rgb = memory.poisoned((2, 31, 37, 3), np.uint8, 0xAB)
    cuda.to_uint8_rgb(memory.upload(output), rgb)
    np.testing.assert_array_equal(memory.download(rgb), kernels.to_uint8_rgb(output))


def test_cuda_assembly_of_a_real_cityscapes_frame(memory, cityscapes_sample):
    name = sorted((cityscapes_sample / "test_inst").glob("*.png"))[0]
    instances = np.asarray(Image.open(name))[None].astype(np.int32)
    label_name = name.name.replace("instanceIds", "labelIds")
    labels = np.asarray(Image.open(cityscapes_sample / "test_label" / label_name))[None]
    inst = kernels.compact_instances(instances, labels)
    table = np.random.default_rng(6).normal(size=(1, inst.kmax, 3)).astype(np.float32)
    expected = kernels.assemble_input(labels, inst, 35, True, table, "float16")
    out = memory.poisoned(expected.shape, expected.dtype)
    cuda.assemble_input(
        memory.upload(labels),
        memory.upload(inst.ids),
        memory.upload(table),
        35,
        True,
        out,
        kmax=inst.kmax,
    )
    np.testing.assert_array_equal(memory.download(out).view(np.uint16), expected.view(np.uint16))


def test_the_pooling_grid_is_sized_by_the_kernels_strip():
    """The host sizes the pooling grid by POOL_STRIP; the kernel strides by kStrip."""
    source = (cubin.SOURCE_DIR / cubin.SOURCE).read_text()
    assert f"constexpr int kStrip = {cuda.POOL_STRIP};" in source
