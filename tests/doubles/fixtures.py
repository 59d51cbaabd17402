"""The `trt_double` fixture: the TensorRT and CUDA runtime doubles installed for one test.

They go into sys.modules as `tensorrt` and `cuda.bindings.runtime` (what
p2phd.engine.core.cuda_runtime imports) and the engine cache is the test's own (engines built for
the double never meet another test's). The CUDA kernels report themselves unavailable, so the
TensorRT backend preprocesses on the CPU, unless the test calls `route_kernels()`: then they run
on the double (tests/doubles/kernels.py) and `render_maps` is used. Everything is restored after
the test. Import the fixture into a test module to use it (tests then ask for `trt_double`):

    from tests.doubles.fixtures import trt_double_fixture  # noqa: F401
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest

from tests.doubles.cudart import CudaRuntimeDouble
from tests.doubles.kernels import KernelsOnDouble
from tests.doubles.tensorrt import TensorRTDouble

# The TensorRT tests' two devices: a real GPU (a `gpu` test needing TensorRT and the CUDA
# kernels) and the doubles (`trt_double`, any machine).
GPU_OR_DOUBLE = [pytest.param("gpu", marks=pytest.mark.gpu("TensorRT", "CUDA kernels")), "double"]


@dataclass
class Doubles:
    cuda: CudaRuntimeDouble
    trt: TensorRTDouble
    monkeypatch: pytest.MonkeyPatch

    def route_kernels(self) -> None:
        """The CUDA kernels' device API on the double, for the `render_maps` path."""
        from p2phd.engine.kernels import cuda as kernels_cuda

        on_double = KernelsOnDouble(self.cuda)
        self.monkeypatch.setattr(kernels_cuda, "unavailable_reason", lambda: None)
        self.monkeypatch.setattr(kernels_cuda, "assemble_input", on_double.assemble_input)
        self.monkeypatch.setattr(kernels_cuda, "to_uint8_rgb", on_double.to_uint8_rgb)


@pytest.fixture(name="trt_double")
def trt_double_fixture(monkeypatch, tmp_path) -> Doubles:
    from p2phd.engine.kernels import cuda as kernels_cuda

    cuda = CudaRuntimeDouble()
    trt = TensorRTDouble(cuda)
    monkeypatch.setenv("P2PHD_CACHE", str(tmp_path / "engine-cache"))
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cuda)
    monkeypatch.setattr(
        kernels_cuda, "unavailable_reason", lambda: "the CUDA runtime double has no kernels"
    )
    return Doubles(cuda, trt, monkeypatch)
