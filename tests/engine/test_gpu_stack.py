"""The `gpu` extra installs one CUDA 12 stack, which loads on drivers R535 (CUDA 12.2) through
R580+; nothing in it may resolve to a CUDA 13 build (those need R580+ and, for cuda-python,
remove `cuda.cudart`)."""

from __future__ import annotations

import subprocess
import tomllib

from packaging.requirements import Requirement

from p2phd.engine.backends.onnxruntime import CUDA_BUILD
from tests.conftest import REPO

# The first release of each package that is a CUDA 13 build (PyPI metadata).
FIRST_CUDA13 = {"cuda-python": "13.0.0", "cuda-bindings": "13.0.0", "onnxruntime-gpu": "1.27.0"}


def gpu_extra() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["optional-dependencies"]["gpu"]]
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def test_gpu_extra_is_cuda_12_throughout():
    extra = gpu_extra()
    # `tensorrt` is the metapackage for the newest CUDA (tensorrt-cu13 today); name the CUDA 12
    # build, of TensorRT 10 from 10.8 (the first with Blackwell, sm_100/sm_120).
    assert "tensorrt" not in extra and "tensorrt-cu12" in extra
    trt = extra["tensorrt-cu12"].specifier
    assert not trt.contains("10.7.0") and trt.contains("10.8.0") and not trt.contains("11.0.0")
    assert "cuda-python" in extra and "nvidia-cuda-nvrtc-cu12" in extra
    for name, req in extra.items():
        assert "cu13" not in name, f"{name} is a CUDA 13 build"
        if name in FIRST_CUDA13:
            assert not req.specifier.contains(FIRST_CUDA13[name]), f"{req} allows CUDA 13"
        assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), (
            f"{req} has no upper bound: a new major release may be a CUDA 13 build"
        )
    assert extra["cuda-python"].specifier.contains("12.9.10")


def test_onnxruntime_cuda_build_is_cuda_12_and_not_in_an_extra():
    req = Requirement(CUDA_BUILD)
    assert req.name == "onnxruntime-gpu" and {"cuda", "cudnn"} <= req.extras
    assert req.specifier.contains("1.26.0") and not req.specifier.contains(FIRST_CUDA13[req.name])
    assert not req.specifier.contains("1.20.2")  # no [cuda,cudnn] extras before 1.21
    # In an extra it would install beside the `onnxruntime` dependency, into one directory.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for extra in project["optional-dependencies"].values():
        assert not any(Requirement(r).name == "onnxruntime-gpu" for r in extra)


def make_n_gpu_check(*variables: str) -> str:
    return subprocess.run(["make", "-n", "-B", "gpu-check", *variables], cwd=REPO,
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


def test_make_gpu_check_installs_the_stack_then_checks_tests_and_benchmarks_it():
    steps = make_n_gpu_check()
    order = [
        '"torch==2.13.0" --index-url',  # a CUDA 12 torch first: PyPI's needs cuda-bindings 13
        '-e ".[train,dev,bench,gpu]"',
        "pip uninstall -q -y onnxruntime onnxruntime-gpu",  # the CPU build out first ...
        "import CUDA_BUILD",  # ... then the CUDA 12 build
        "cli doctor --require-gpu",
        "pytest -m gpu",
        "benchmarks/cuda_kernels.py",
        "--backends tensorrt",
    ]
    at = [steps.find(step) for step in order]
    assert -1 not in at and at == sorted(at), steps
    bench = steps[at[-1] :]
    assert "--precision fp16 --batch 1,2,4,8,16 --size 512x1024" in bench
    assert "-o benchmarks/results/gpu-check/bench-512p-tensorrt" in bench
    # every check runs; the exit status names the failed ones
    assert steps.count("|| failed=") == 4 and "exit 1; fi" in steps


def test_make_gpu_check_with_a_python_that_has_a_cuda_stack_installs_nothing_else():
    steps = make_n_gpu_check("GPU_PYTHON=/opt/py/bin/python3")
    assert "/opt/py/bin/python3 -m pip install -q --no-build-isolation --no-deps -e ." in steps
    assert "--index-url" not in steps and "[train,dev,bench,gpu]" not in steps
    assert "/opt/py/bin/python3 -m pytest -m gpu" in steps
