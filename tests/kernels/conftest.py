"""Fixtures of the kernel tests: the CPU emulation of the CUDA kernels' launch grid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kernels import emulator


@pytest.fixture(scope="session")
def emulation_library(tmp_path_factory) -> Path:
    """kernels_cuda.cu built for the CPU with g++ (sanitized in the sanitizer run)."""
    try:
        return emulator.build(tmp_path_factory.mktemp("emulation"))
    except FileNotFoundError as e:
        pytest.skip(str(e))
    except subprocess.CalledProcessError as e:
        pytest.fail(f"the kernel emulation does not compile:\n{e.stderr}")
