"""benchmarks/cuda_kernels.py over the driver double (the kernels' own source run by the CPU
emulation of the launch grid): its checks against the CPU kernels and its rows work before a
GPU session spends its minutes on it. The timings here are the double's, never a GPU's."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from p2phd.engine.core import cuda_runtime
from p2phd.engine.kernels import cubin, cuda
from tests.conftest import REPO
from tests.kernels.driver_double import DriverDouble
from tests.kernels.emulator import Emulator


class FixedTimer:
    """CudaEventTimer's interface with a fixed 1 ms: the double has no device clock."""

    def __init__(self, stream: int):
        pass

    def record_start(self) -> None:
        pass

    record_end = close = record_start

    def elapsed_ms(self) -> float:
        return 1.0


@pytest.fixture
def bench(request, monkeypatch, emulation_library):
    drv = DriverDouble(Emulator(emulation_library))
    monkeypatch.setattr(cuda_runtime, "driver", lambda: drv)
    monkeypatch.setattr(cubin, "cubin", lambda arch, driver: cubin.ELF_MAGIC)
    cuda._gpu.cache_clear()
    request.addfinalizer(cuda._gpu.cache_clear)
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    module = importlib.import_module("cuda_kernels")
    monkeypatch.setattr(module, "driver", lambda: drv)
    monkeypatch.setattr(module, "CudaEventTimer", FixedTimer)
    return module


def frame(h: int = 48, w: int = 80):
    """Blocky Cityscapes-style instance ids (cars 26xxx, a road without instances) and labels."""
    rng = np.random.default_rng(5)
    ids = rng.choice([7, 26001, 26002, 24000, 11], size=(1, h // 8, w // 8))
    ids = ids.repeat(8, 1).repeat(8, 2).astype(np.int32)
    labels = np.where(ids >= 1000, ids // 1000, ids).astype(np.uint8)
    return ids, labels


def test_every_kernel_is_checked_and_timed(bench):
    dev = bench.Device()
    rows: dict = {}
    try:
        wrong = bench.bench_frame(dev, *frame(), 3, rows)
    finally:
        dev.close()
    assert wrong == []
    names = {"boundaries", "pool+broadcast"}
    names |= {
        f"{k}-{d}" for k in ("assemble", "to_uint8") for d in ("float32", "float16", "bfloat16")
    }
    assert set(rows) == names
    assert all(ms == pytest.approx(1 / 3) and nbytes > 0 for ((ms, nbytes),) in rows.values())


def test_a_kernel_that_differs_from_the_cpu_is_named(bench, monkeypatch):
    monkeypatch.setattr(cuda, "to_uint8_rgb", lambda output, rgb, stream=0: None)  # writes nothing
    dev = bench.Device()
    try:
        wrong = bench.bench_frame(dev, *frame(), 1, {})
    finally:
        dev.close()
    assert wrong == ["to_uint8-float32", "to_uint8-float16", "to_uint8-bfloat16"]
