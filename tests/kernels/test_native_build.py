"""The native build's configuration (CMakeLists.txt), as pip and `make native-check` use it.

pip must never see -Werror (a new compiler's new warning would break installing even the CPU
kernels) nor any CUDA code (NVRTC compiles the kernels at run time); the checks must; a user's
CMAKE_CUDA_ARCHITECTURES must win over the project's default, which covers Blackwell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def configure(build: Path, *defines: str) -> str:
    """Configure the project into `build` (Ninja) and return its build.ninja."""
    if shutil.which("cmake") is None or shutil.which("ninja") is None:
        pytest.skip("cmake and ninja are needed to configure the native build")
    command = ["cmake", "-S", str(REPO), "-B", str(build), "-G", "Ninja", *defines]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return (build / "build.ninja").read_text()


def test_pip_configuration_has_no_werror_and_no_cuda_code(tmp_path):
    """What scikit-build-core configures (SKBUILD=ON): the CPU module only, no -Werror, even
    with nvcc on PATH."""
    pybind11 = subprocess.run(
        [sys.executable, "-m", "pybind11", "--cmakedir"], capture_output=True, text=True
    ).stdout.strip()
    ninja = configure(
        tmp_path,
        "-DSKBUILD=ON",
        f"-Dpybind11_DIR={pybind11}",
        f"-DPython_EXECUTABLE={sys.executable}",
    )
    assert "_native" in ninja
    assert "-Werror" not in ninja
    assert "kernels_cuda" not in ninja
    assert "kernels_cuda" not in (tmp_path / "cmake_install.cmake").read_text()


def test_warnings_are_errors_when_the_check_asks(tmp_path):
    ninja = configure(tmp_path, "-DP2PHD_WERROR=ON", "-DP2PHD_CUDA=OFF")
    flags = [line for line in ninja.splitlines() if "FLAGS" in line and "-Wall" in line]
    assert flags and all("-Werror" in line for line in flags)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_cuda_architectures_default_to_ampere_through_blackwell_and_the_users_choice_wins(tmp_path):
    def archs(ninja: str) -> set[str]:
        return set(re.findall(r"code=\[?(sm_\d+)", ninja))

    default = archs(configure(tmp_path))
    assert {"sm_80", "sm_86", "sm_89", "sm_90"} <= default
    version = subprocess.run(["nvcc", "--version"], capture_output=True, text=True).stdout
    major, minor = map(int, re.search(r"release (\d+)\.(\d+)", version).groups())
    if (major, minor) >= (12, 8):
        assert {"sm_100", "sm_120"} <= default
    assert archs(configure(tmp_path, "-DCMAKE_CUDA_ARCHITECTURES=75-real")) == {"sm_75"}
    assert archs(configure(tmp_path)) == {"sm_75"}  # a reconfigure keeps the user's choice
