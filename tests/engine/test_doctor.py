"""`p2phd doctor` says what this machine can run and, for anything broken, what to install or
upgrade; `backend="auto"` explains itself with the same GPU facts. Real probes on this machine;
the GPU lines with faked probes (an H100 on an R535 driver with the wrong CUDA builds)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from p2phd.engine.apps import doctor
from p2phd.engine.apps.cli import main
from p2phd.engine.backends import choose_backend
from p2phd.engine.core import platform
from p2phd.engine.core.cpu_features import cpu_flags
from tests.conftest import REPO, gpu_facts, gpu_verdict
from tests.engine.test_cli import p2phd

H100 = platform.Gpu("NVIDIA H100 80GB HBM3", "535.216.01", "9.0")


def line(out: str, name: str) -> str:
    return next(x for x in out.splitlines() if x.startswith(name + " "))


def test_doctor_reports_this_machine_and_exits_0_when_the_cpu_path_works():
    out = p2phd("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("GPU", "driver", "CUDA runtime", "TensorRT", "ONNX Runtime", "OpenVINO",
                 "CPU", "CUDA kernels", "PyTorch CUDA", "backend auto"):  # fmt: skip
        assert line(out.stdout, name)
    cpu = line(out.stdout, "CPU")
    has = cpu.partition("has ")[2].partition(";")[0]
    for flag, label in doctor.CPU_INSTRUCTIONS.items():
        assert (label in has) == (flag in cpu_flags()), cpu
    assert "CPU path: works" in out.stdout
    gpu = line(out.stdout, "GPU")
    if platform.gpu_visible() is None:
        assert " absent " in gpu and "GPU path: not usable" in out.stdout
        assert p2phd("doctor", "--require-gpu").returncode == 1
    else:
        assert " absent " not in gpu


@pytest.fixture
def h100_r535(monkeypatch):
    """An H100 on an R535 driver (CUDA 12.2) with CUDA 13 builds of cuda-python and TensorRT."""
    versions = {"cuda-bindings": "13.0.1", "tensorrt-cu13": "10.13.3.9"}
    monkeypatch.setattr(platform, "nvidia_smi", lambda: [H100])
    monkeypatch.setattr(platform, "device_nodes", lambda: ["/dev/nvidia0"])
    monkeypatch.setattr(platform, "driver_cuda_version", lambda: (12, 2))
    monkeypatch.setattr(
        platform, "installed", lambda *names: [(n, versions[n]) for n in names if n in versions]
    )
    platform.gpu_summary.cache_clear()
    gpu_facts.cache_clear()  # probed again under the fakes
    yield
    platform.gpu_summary.cache_clear()
    gpu_facts.cache_clear()


def test_cuda_13_builds_on_an_r535_driver_are_named_with_the_fix(h100_r535, capsys):
    facts = {f.name: f for f in doctor.collect(doctor.GPU_PROBES)}
    assert facts["GPU"].status == doctor.OK and "sm_90" in facts["GPU"].found
    assert facts["driver"].status == doctor.OK
    assert facts["driver"].found == "535.216.01, supports CUDA 12.2"
    runtime, trt = facts["CUDA runtime"], facts["TensorRT"]
    assert runtime.status == doctor.BROKEN and runtime.fix.startswith(doctor.GPU_EXTRA)
    assert runtime.found == "cuda-bindings 13.0.1 (CUDA 13) on a CUDA 12 driver"
    assert trt.status == doctor.BROKEN and "tensorrt-cu13" in trt.fix and "[gpu]" in trt.fix
    problems = {f.name for f in doctor.gpu_problems()}
    assert {"CUDA runtime", "TensorRT"} <= problems and "GPU" not in problems
    assert main(["doctor"]) == 0  # the CPU path still works ...
    out = capsys.readouterr().out
    assert "fix:" in out and "GPU path: not usable: " in out
    assert main(["doctor", "--require-gpu"]) == 1  # ... the GPU path does not


def test_a_driver_older_than_r535_is_told_to_upgrade(h100_r535, monkeypatch):
    monkeypatch.setattr(
        platform, "nvidia_smi", lambda: [platform.Gpu("Tesla T4", "470.82.01", "7.5")]
    )
    monkeypatch.setattr(platform, "driver_cuda_version", lambda: (11, 4))
    fact = doctor.driver_fact()
    assert fact.status == doctor.BROKEN and "R535 or newer" in fact.fix


def test_device_files_without_nvidia_smi_count_as_a_visible_gpu(monkeypatch):
    monkeypatch.setattr(platform, "nvidia_smi", lambda: None)
    monkeypatch.setattr(platform, "device_nodes", lambda: ["/dev/nvidia0"])
    assert platform.gpu_visible() == "/dev/nvidia0 exists"
    assert doctor.gpu_fact().status == doctor.BROKEN


def test_auto_explains_itself_with_the_doctors_gpu_line(h100_r535):
    name, why = choose_backend("auto")
    assert "NVIDIA H100 80GB HBM3, sm_90, 535.216.01, supports CUDA 12.2" in why, why
    assert why.startswith("auto: ")


def test_gpu_tests_fail_with_the_reason_where_a_gpu_is_visible_but_the_stack_is_broken(h100_r535):
    action, why = gpu_verdict.__wrapped__()  # uncached: the probes are faked
    assert action == "fail"
    assert "nvidia-smi lists NVIDIA H100 80GB HBM3" in why and "on a CUDA 12 driver" in why


def test_a_gpu_test_fails_only_on_what_it_needs(h100_r535, monkeypatch):
    """A GPU whose CUDA kernels work but without TensorRT (as on a machine with only the CUDA
    13 stack): the kernel tests run, the TensorRT tests fail naming TensorRT alone."""
    works = ("GPU", "driver", "CUDA runtime", "CUDA kernels")
    facts = [doctor.Fact(name, doctor.OK, "works", gpu=True) for name in works]
    trt = doctor.Fact("TensorRT", doctor.ABSENT, "not installed", doctor.GPU_EXTRA, gpu=True)
    facts.append(trt)
    monkeypatch.setattr(doctor, "GPU_PROBES", tuple((lambda f=f: f) for f in facts))
    assert gpu_verdict.__wrapped__(("CUDA kernels",)) is None
    action, why = gpu_verdict.__wrapped__(("TensorRT", "CUDA kernels"))
    assert action == "fail" and f"TensorRT: not installed (fix: {doctor.GPU_EXTRA})" in why
    assert "CUDA kernels" not in why
    with pytest.raises(ValueError, match="no doctor fact named"):
        gpu_verdict.__wrapped__(("TensorRt",))


def test_pytorch_cuda_is_an_optional_fact_naming_a_cpu_build():
    fact = doctor.torch_cuda_fact()
    assert fact.optional and fact.gpu
    import torch

    if torch.version.cuda is None:
        assert fact.status == doctor.ABSENT and "is a CPU build" in fact.found
        assert "TORCH_INDEX" in fact.fix


def test_gpu_tests_skip_with_the_reason_where_no_gpu_is_visible(monkeypatch):
    monkeypatch.setattr(platform, "nvidia_smi", lambda: None)
    monkeypatch.setattr(platform, "device_nodes", lambda: [])
    assert gpu_verdict.__wrapped__() == (
        "skip", "needs an NVIDIA GPU; none visible (no nvidia-smi, no /dev/nvidia*)"
    )  # fmt: skip


def test_cuda_12_and_13_tensorrt_installed_together_are_named_with_the_fix(h100_r535, monkeypatch):
    both = [("tensorrt-cu12", "10.16.1.11"), ("tensorrt-cu13", "10.16.1.11")]
    monkeypatch.setattr(platform, "installed", lambda *names: [d for d in both if d[0] in names])
    fact = doctor.tensorrt_fact()
    assert fact.status == doctor.BROKEN and "installed over each other" in fact.found
    assert "tensorrt-cu13-bindings" in fact.fix and fact.fix.endswith(doctor.GPU_EXTRA)


@pytest.mark.skipif(platform.gpu_visible() is not None, reason="a real GPU is visible here")
def test_gpu_tests_fail_loudly_under_an_nvidia_smi_that_lists_a_gpu(tmp_path):
    """End to end: pytest on a `gpu` test file, with an nvidia-smi on PATH that lists an H100
    while nothing else of the GPU stack works: the tests fail, naming what to fix."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 535.216.01, 9.0'\n")
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "tests/engine/test_tensorrt_backend.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout[-2000:]
    assert "an NVIDIA GPU is visible (nvidia-smi lists NVIDIA H100 80GB HBM3)" in out.stdout
    assert "TensorRT: not installed (fix: pip install -e '.[gpu]')" in out.stdout
