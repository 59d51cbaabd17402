"""Shared fixtures: the GPU marker's rule and the optional real Cityscapes samples.

`gpu` tests skip where no NVIDIA GPU is visible, and FAIL, with `p2phd doctor`'s reason and fix,
where one is visible but what the test needs cannot initialise: a GPU machine with a broken
stack must not report green having tested nothing. `@pytest.mark.gpu("TensorRT", ...)` names
the doctor's facts a test needs beyond the GPU, driver and CUDA runtime.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# P2PHD_CITYSCAPES_SAMPLE: a copy elsewhere (make gpu-check passes its SAMPLES on machines
# that get the checkout without ../shared)
CITYSCAPES_SAMPLE = Path(
    os.environ.get("P2PHD_CITYSCAPES_SAMPLE", REPO.parent / "shared" / "data" / "cityscapes-sample")
)


BASE_NEEDS = ("GPU", "driver", "CUDA runtime")  # what every `gpu` test needs


@functools.cache
def gpu_facts() -> dict:
    """The doctor's GPU facts by name, probed once per session (TensorRT's builder, ONNX
    Runtime's CUDA session and torch are slow to start), whatever each test needs of them."""
    from p2phd.engine.apps import doctor

    return {f.name: f for f in doctor.collect(doctor.GPU_PROBES)}


@functools.cache
def gpu_verdict(needs: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """None: a gpu test needing the doctor's facts `needs` (beyond BASE_NEEDS) runs;
    ("skip" | "fail", why) otherwise. A test that needs only the CUDA kernels runs on a
    machine without TensorRT; one that needs TensorRT fails there, naming it."""
    from p2phd.engine.apps import doctor
    from p2phd.engine.core import platform

    visible = platform.gpu_visible()
    if visible is None:
        return "skip", "needs an NVIDIA GPU; none visible (no nvidia-smi, no /dev/nvidia*)"
    facts = gpu_facts()
    unknown = set(needs) - facts.keys()
    if unknown:
        raise ValueError(f"gpu marker: no doctor fact named {sorted(unknown)}; see {list(facts)}")
    problems = [facts[name] for name in BASE_NEEDS + needs if facts[name].status != doctor.OK]
    if not problems:
        return None
    why = "; ".join(f"{f.name}: {f.found}" + (f.fix and f" (fix: {f.fix})") for f in problems)
    return "fail", f"an NVIDIA GPU is visible ({visible}) but the GPU stack is not usable: {why}"


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up
def pytest_runtest_setup(item):
    marker = item.get_closest_marker("gpu")
    if marker is None:
        return
    verdict = gpu_verdict(tuple(marker.args))
    if verdict is not None:
        action, why = verdict
        (pytest.skip if action == "skip" else pytest.fail)(why)


@pytest.fixture(scope="session", autouse=True)
def engine_cache_dir(tmp_path_factory) -> Path:
    """A private engine cache for the session (and the CLIs it starts), not the user's own."""
    path = tmp_path_factory.mktemp("engine-cache")
    os.environ["P2PHD_CACHE"] = str(path)
    return path


@pytest.fixture
def cityscapes_sample() -> Path:
    """The real Cityscapes samples in ../shared, or a skip when absent (a user's fresh clone)."""
    if not (CITYSCAPES_SAMPLE / "test_label").is_dir():
        pytest.skip(f"real Cityscapes samples not found at {CITYSCAPES_SAMPLE}")
    return CITYSCAPES_SAMPLE
