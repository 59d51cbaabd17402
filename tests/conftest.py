"""Shared fixtures: the GPU marker's skip rule and the optional real Cityscapes samples."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CITYSCAPES_SAMPLE = REPO.parent / "shared" / "data" / "cityscapes-sample"


def cuda_available() -> bool:
    """True when an NVIDIA driver and device are visible."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        from cuda.bindings import runtime as cudart  # cuda-python

        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and count > 0
    except ImportError:
        import subprocess

        return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


@pytest.fixture(scope="session", autouse=True)
def engine_cache_dir(tmp_path_factory) -> Path:
    """A private engine cache for the session (and the CLIs it starts), not the user's own."""
    import os

    path = tmp_path_factory.mktemp("engine-cache")
    os.environ["P2PHD_CACHE"] = str(path)
    return path


def pytest_collection_modifyitems(config, items):
    if cuda_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cityscapes_sample() -> Path:
    """The real Cityscapes samples in ../shared, or a skip when absent (a user's fresh clone)."""
    if not (CITYSCAPES_SAMPLE / "test_label").is_dir():
        pytest.skip(f"real Cityscapes samples not found at {CITYSCAPES_SAMPLE}")
    return CITYSCAPES_SAMPLE
