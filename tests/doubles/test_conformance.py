"""The CUDA runtime double against the real cuda-python, where it is installed: every function
the double offers exists there with the same parameter names, and the enums it uses have the
same members and values. (The TensorRT double follows the TensorRT 10 Python API docs; TensorRT
itself is not installable without an NVIDIA stack, so it is not compared here.)"""

from __future__ import annotations

import inspect
import re

import pytest

from tests.doubles import cudart


def real_runtime():
    return pytest.importorskip(
        "cuda.bindings.runtime", reason="cuda-python is not installed", exc_type=ImportError
    )


def test_functions_have_cuda_pythons_names_and_parameters():
    real = real_runtime()
    for name in sorted(cudart._API):
        signature = (getattr(real, name).__doc__ or "").splitlines()[0]
        wanted = [
            p.split(":")[0].split()[-1]
            for p in re.findall(r"\((.*)\)", signature)[0].split(",")
            if p.strip()
        ]
        method = getattr(cudart.CudaRuntimeDouble, name)
        got = list(inspect.signature(method).parameters)[1:]  # without self
        assert got == wanted, (name, signature)


def test_enums_have_cuda_pythons_values():
    real = real_runtime()
    for enum in (
        cudart.cudaMemcpyKind,
        cudart.cudaStreamCaptureMode,
        cudart.cudaStreamCaptureStatus,
        cudart.cudaDeviceAttr,
        cudart.cudaError_t,
    ):
        theirs = getattr(real, enum.__name__)
        for member in enum:
            assert int(getattr(theirs, member.name)) == member.value, member
    assert real.cudaStreamNonBlocking == cudart.CudaRuntimeDouble.cudaStreamNonBlocking
