"""ONNX Runtime's CUDA execution provider is used only where it really runs: a session that fell
back to the CPU, or a CPU and a CUDA build installed over each other, is said out loud.

No GPU here: the driver file and the provider list are faked; the sessions are real ONNX
Runtime sessions (this CPU build falls back to the CPU exactly as a CUDA build does when cuDNN
or cuBLAS is missing)."""

from __future__ import annotations

import logging

import onnxruntime as ort
import pytest

from p2phd.common.errors import BackendUnavailable
from p2phd.engine.backends import onnxruntime as ort_backend
from p2phd.engine.backends.onnxruntime import OnnxRuntimeBackend, cuda_unavailable_reason
from p2phd.engine.core.package import ModelPackage


@pytest.fixture
def cuda_offered(monkeypatch, tmp_path):
    """A machine that looks like it has an NVIDIA driver and onnxruntime-gpu alone."""
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.216.01\n")
    monkeypatch.setattr(ort_backend, "DRIVER_FILE", driver)
    available = ort.get_available_providers()
    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *available]
    )
    monkeypatch.setattr(ort_backend, "installed_builds", lambda: ["onnxruntime-gpu 1.26.0"])


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_a_session_that_fell_back_to_the_cpu_is_refused_with_the_reason(
    cuda_offered, tiny_package_source
):
    assert cuda_unavailable_reason() is None  # the provider is offered ...
    with pytest.raises(BackendUnavailable, match="did not initialise") as e:
        OnnxRuntimeBackend(ModelPackage(tiny_package_source), "fp32")  # ... but does not run
    assert "fell back to the CPU" in str(e.value) and "onnxruntime-gpu[cuda,cudnn]" in str(e.value)


def test_cpu_and_cuda_builds_installed_together_are_named_with_the_fix(
    cuda_offered, monkeypatch, tiny_package_source, caplog
):
    both = ["onnxruntime 1.32.0", "onnxruntime-gpu 1.26.0"]
    monkeypatch.setattr(ort_backend, "installed_builds", lambda: both)
    reason = cuda_unavailable_reason()
    assert "onnxruntime 1.32.0 and onnxruntime-gpu 1.26.0 are both installed" in reason
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in reason
    unsupported = OnnxRuntimeBackend.reduced_unsupported("fp16")
    assert "CUDA execution provider only" in unsupported and "both installed" in unsupported
    with caplog.at_level(logging.WARNING):
        backend = OnnxRuntimeBackend(ModelPackage(tiny_package_source), "fp32")
    assert backend.device() == "cpu"  # the CPU path still runs, and the log says why not CUDA
    assert "both installed" in caplog.text


def test_installed_builds_reads_the_distributions_pip_installed():
    builds = ort_backend.installed_builds()
    assert any(b.startswith(("onnxruntime ", "onnxruntime-gpu ")) for b in builds)
    assert all(b.split()[1][0].isdigit() for b in builds)


def test_without_a_driver_the_cpu_runs_and_fp16_says_why_not(monkeypatch, tmp_path):
    monkeypatch.setattr(ort_backend, "DRIVER_FILE", tmp_path / "absent")
    monkeypatch.setattr(ort_backend, "installed_builds", lambda: ["onnxruntime 1.32.0"])
    assert cuda_unavailable_reason() == "no NVIDIA driver is loaded"
    assert "no NVIDIA driver" in OnnxRuntimeBackend.reduced_unsupported("fp16")
