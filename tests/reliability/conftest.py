"""Reliability fixtures: the server tests' tiny package and servers, and this process's memory.

The servers under test run in this process (a real gRPC server on 127.0.0.1 in a thread), so the
process's resident set is the server's plus the test client's: a bound on it bounds the server.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import pytest

from tests.editor.conftest import client, default_model, editor_app, editor_renderer  # noqa: F401
from tests.engine.conftest import tiny_package_source  # noqa: F401 (fixture)
from tests.server.conftest import gated, server_package, start_server  # noqa: F401 (fixtures)

STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss_mib() -> float:
    """This process's resident memory now (MiB)."""
    return _status_kib("VmRSS") / 1024


def live_mib() -> float:
    """This process's resident memory once glibc has handed its free heap pages back to the
    system (malloc_trim), so that what it shows is what is still held (MiB)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    return rss_mib()


def peak_rss_mib() -> float:
    """This process's peak resident memory since the last `reset_peak_rss` (MiB)."""
    return _status_kib("VmHWM") / 1024


def reset_peak_rss() -> None:
    """Start a new peak measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.fixture
def memory():
    """Skip on systems without /proc memory accounting; otherwise the helpers above."""
    if not STATUS.exists():
        pytest.skip("needs /proc/self/status (Linux) to measure resident memory")
    try:
        reset_peak_rss()
    except OSError:
        pytest.skip("cannot reset the peak resident memory (/proc/self/clear_refs)")

    class Memory:
        rss = staticmethod(rss_mib)
        live = staticmethod(live_mib)
        peak = staticmethod(peak_rss_mib)
        reset_peak = staticmethod(reset_peak_rss)

    return Memory
