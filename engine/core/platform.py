"""What this machine has: installed distributions, the NVIDIA GPUs and the driver.

Plain probes, below every layer that asks: the backends (which ONNX Runtime builds are installed,
the GPU line `backend="auto"` quotes), the Triton repository writer (GPU or CPU instances) and
`p2phd doctor`, which turns these facts into statuses and fixes. Probes never raise: an absent
tool or library is an answer (None, empty), not an error.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata


@dataclass(frozen=True)
class Gpu:
    """What the driver reports about one NVIDIA GPU."""

    name: str
    driver: str  # e.g. "535.216.01"
    compute_capability: str  # e.g. "9.0"

    @property
    def driver_branch(self) -> int:
        return int(self.driver.split(".")[0])


@functools.cache
def nvidia_smi() -> tuple[Gpu, ...] | None:
    """The GPUs nvidia-smi lists, or None where nvidia-smi is absent or fails (asked once)."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    rows = [[f.strip() for f in line.split(",")] for line in out.stdout.splitlines() if line]
    return tuple(Gpu(*row[:3]) for row in rows if len(row) >= 3)


def device_nodes() -> list[str]:
    """/dev/nvidia0, /dev/nvidia1, ...: the driver's device files (also inside containers)."""
    return sorted(glob.glob("/dev/nvidia[0-9]*"))


@functools.cache
def driver_cuda_version() -> tuple[int, int] | None:
    """The newest CUDA version the loaded driver supports (cuDriverGetVersion), or None."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return divmod(version.value, 1000)[0], version.value % 1000 // 10


def installed(*names: str) -> list[tuple[str, str]]:
    """Those of the distributions `names` that are installed, with their versions."""
    found = []
    for name in names:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return found


def gpu_visible() -> str | None:
    """How an NVIDIA GPU shows itself here (nvidia-smi or a device file), or None."""
    gpus = nvidia_smi()
    if gpus:
        return f"nvidia-smi lists {gpus[0].name}"
    nodes = device_nodes()
    return f"{nodes[0]} exists" if nodes else None


def gpu_line() -> str:
    """The first GPU as one line (name, how many more, sm_XY), or what is seen instead."""
    gpus = nvidia_smi()
    if gpus:
        g = gpus[0]
        more = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
        return f"{g.name}{more}, sm_{g.compute_capability.replace('.', '')}"
    nodes = device_nodes()
    if nodes:
        return f"{nodes[0]} exists but nvidia-smi does not answer"
    return "no NVIDIA GPU visible (no nvidia-smi, no /dev/nvidia*)"


def driver_line() -> str:
    """The driver's version and the newest CUDA it supports, as one line."""
    gpus = nvidia_smi()
    cuda = driver_cuda_version()
    if not gpus and cuda is None:
        return "no NVIDIA driver loaded"
    supports = f"supports CUDA {cuda[0]}.{cuda[1]}" if cuda else "libcuda.so.1 not loadable"
    return f"{gpus[0].driver}, {supports}" if gpus else supports


@functools.cache
def gpu_summary() -> str:
    """The GPU and its driver in one line (the GPU line alone where nvidia-smi lists none), for
    `backend="auto"`'s explanation; `p2phd doctor` shows the same two lines."""
    return f"{gpu_line()}, {driver_line()}" if nvidia_smi() else gpu_line()
