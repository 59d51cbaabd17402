"""The CUDA kernels against the CPU kernels (torch CUDA tensors as device buffers).

The `gpu` tests need an NVIDIA GPU, torch with CUDA, cuda-python 12 and NVRTC (the `gpu` extra):
the kernels are compiled by NVRTC at first use and launched through the driver API. The others
run on any machine: what the wrapper checks before any launch, and that `unavailable_reason`
names what is missing. Device outputs are poisoned first, so a skipped element fails the
comparison. tests/kernels/test_emulated_kernels.py runs the same source on the CPU.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from PIL import Image

from p2phd.engine import cuda_runtime, kernels
from p2phd.engine.errors import BackendUnavailable, InputError
from p2phd.engine.kernels import cubin, cuda
from tests.kernels.driver_double import DriverDouble, DriverError

gpu = pytest.mark.gpu

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


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    reason = cuda.unavailable_reason()
    assert reason is None, f"{reason} (pip install 'p2phd[gpu]' installs cuda-python and NVRTC)"
    return torch


def device(torch, a: np.ndarray):
    """A CUDA tensor holding `a` (bfloat16 goes through its bits)."""
    if a.dtype == np.dtype(ml_dtypes.bfloat16):
        return torch.from_numpy(a.view(np.int16)).cuda().view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def wrap(t, dtype) -> cuda.DeviceArray:
    """A torch CUDA tensor as a DeviceArray of NumPy element type `dtype`."""
    return cuda.DeviceArray(t.data_ptr(), tuple(t.shape), np.dtype(dtype))


def bits(torch, t) -> np.ndarray:
    """The raw bits of a CUDA tensor, on the host."""
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[t.element_size()]
    return t.view(width).cpu().numpy()


def maps(shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocky instance maps with ids up to 65535 (always one above 2048) and labels < 35."""
    rng = np.random.default_rng(seed)
    pool = np.append(rng.choice(65536, size=6, replace=False), 4097)
    b, h, w = shape
    small = rng.choice(pool, size=(b, -(-h // 3), -(-w // 3)))
    instances = small.repeat(3, 1).repeat(3, 2)[:, :h, :w].astype(np.int32)
    labels = rng.integers(0, 35, size=shape, dtype=np.uint8)
    return np.ascontiguousarray(instances), labels


@gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_boundaries_equal_cpu(torch, shape):
    instances, _ = maps(shape, 0)
    out = torch.full(shape, 0xAB, dtype=torch.uint8, device="cuda")
    cuda.instance_boundaries(device(torch, instances), out)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), kernels.instance_boundaries(instances))


@gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_pooling_equals_cpu(torch, shape):
    instances, labels = maps(shape, 1)
    inst = kernels.compact_instances(instances, labels)
    b, h, w = shape
    features = np.random.default_rng(2).normal(size=(b, 3, h, w)).astype(np.float32)
    means = torch.full((b, inst.kmax, 3), float("nan"), device="cuda")
    broadcast = torch.full((b, 3, h, w), float("nan"), device="cuda")
    workspace = torch.empty(
        cuda.pool_workspace_bytes(b, 3, inst.kmax), dtype=torch.uint8, device="cuda"
    )
    cuda.instance_pool(
        device(torch, features), device(torch, inst.ids), inst.kmax, means, broadcast, workspace
    )
    torch.cuda.synchronize()
    cpu_means, cpu_map = kernels.instance_pool(features, inst)
    np.testing.assert_allclose(means.cpu().numpy(), cpu_means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(broadcast.cpu().numpy(), cpu_map, rtol=1e-5, atol=1e-6)


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("features", ["table", "zeros", "none"])
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_assembly_equals_cpu_bit_for_bit(torch, dtype, features, shape):
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
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    out = torch.full(expected.shape, float("nan"), dtype=torch_dtype[dtype], device="cuda")
    status = torch.empty(2, dtype=torch.int64, device="cuda")
    cuda.assemble_input(
        device(torch, labels),
        device(torch, inst.ids),
        None if table is None else device(torch, table),
        35,
        True,
        wrap(out, expected.dtype),
        kmax=inst.kmax,
        feat_channels=feat_channels,
        status=wrap(status, np.uint64),
    )
    np.testing.assert_array_equal(bits(torch, out), expected.view(bits(torch, out).dtype))


@gpu
def test_cuda_assembly_reports_a_label_at_or_above_label_nc(torch):
    labels = np.zeros((2, 4, 6), np.uint8)
    labels[1, 3, 2] = 9
    out = torch.empty((2, 9, 4, 6), device="cuda")
    status = torch.empty(2, dtype=torch.int64, device="cuda")
    with pytest.raises(InputError, match=r"image 1 .*y=3, x=2"):
        cuda.assemble_input(
            device(torch, labels), None, None, 9, False, out, status=wrap(status, np.uint64)
        )


@gpu
@pytest.mark.parametrize("shape", SHAPES)
def test_cuda_capped_grids_equal_cpu(torch, shape):
    """Grids of fewer threads than pixels (2 blocks of 64): the grid-stride loops on the GPU."""
    capped = cuda.Kernels(cuda._loaded, threads=64, max_blocks=2)
    instances, labels = maps(shape, 8)
    inst = kernels.compact_instances(instances, labels)
    table = np.random.default_rng(9).normal(size=(shape[0], inst.kmax, 3)).astype(np.float32)
    expected = kernels.assemble_input(labels, inst, 35, True, table, "float16")
    out = torch.full(expected.shape, float("nan"), dtype=torch.float16, device="cuda")
    capped.assemble_input(
        device(torch, labels), device(torch, inst.ids), device(torch, table), 35, True, out,
        kmax=inst.kmax,
    )  # fmt: skip
    rgb = torch.full((*shape, 3), 0xAB, dtype=torch.uint8, device="cuda")
    first3 = out[:, :3].contiguous()  # held until the stream is done with it
    capped.to_uint8_rgb(wrap(first3, np.float16), rgb)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(bits(torch, out), expected.view(np.int16))
    np.testing.assert_array_equal(rgb.cpu().numpy(), kernels.to_uint8_rgb(expected[:, :3]))


@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_uint8_conversion_equals_cpu(torch, dtype):
    rng = np.random.default_rng(5)
    values = rng.uniform(-1.2, 1.2, size=(2, 3, 31, 37)).astype(np.float32)
    values.reshape(-1)[:8] = [np.nan, np.inf, -np.inf, 0.0, -1.0, 1.0, 7.0, -7.0]
    with np.errstate(over="ignore"):
        output = values.astype(kernels.DTYPES[dtype][0])
    rgb = torch.full((2, 31, 37, 3), 0xAB, dtype=torch.uint8, device="cuda")
    cuda.to_uint8_rgb(wrap(device(torch, output), output.dtype), rgb)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(rgb.cpu().numpy(), kernels.to_uint8_rgb(output))


@gpu
def test_cuda_assembly_of_a_real_cityscapes_frame(torch, cityscapes_sample):
    name = sorted((cityscapes_sample / "test_inst").glob("*.png"))[0]
    instances = np.asarray(Image.open(name))[None].astype(np.int32)
    label_name = name.name.replace("instanceIds", "labelIds")
    labels = np.asarray(Image.open(cityscapes_sample / "test_label" / label_name))[None]
    inst = kernels.compact_instances(instances, labels)
    table = np.random.default_rng(6).normal(size=(1, inst.kmax, 3)).astype(np.float32)
    expected = kernels.assemble_input(labels, inst, 35, True, table, "float16")
    out = torch.full(expected.shape, float("nan"), dtype=torch.float16, device="cuda")
    cuda.assemble_input(
        device(torch, labels),
        device(torch, inst.ids),
        device(torch, table),
        35,
        True,
        out,
        kmax=inst.kmax,
    )
    torch.cuda.synchronize()
    np.testing.assert_array_equal(bits(torch, out), expected.view(np.int16))
