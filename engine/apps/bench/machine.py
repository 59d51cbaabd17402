"""The machine a benchmark ran on, and its peak multiply-accumulate rate.

CPU peak = physical cores x clock x FMA lanes per cycle per core for the precision's fastest
instructions (AMX tiles, AVX512-BF16 dot products, AVX-512 or AVX2 FMA). GPU peak = SMs x clock x
dense FP16 tensor-core FMAs per SM per cycle for its compute capability. The CPU clock is measured
with all cores busy (a hypervisor's /proc/cpuinfo shows only the nominal clock, not turbo); the
assumptions behind each number are returned with it, so a reader can redo the arithmetic.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from p2phd.engine.backends import backend_class, backend_names
from p2phd.engine.core.cpu_features import cpu_flags

LIBRARIES = ("p2phd", "numpy", "pillow")  # and each backend's required modules

# Dense FP16 tensor-core FMAs per SM per clock (FP32 accumulate), by compute capability major.minor.
GPU_FP16_FMA_PER_SM = {
    "7.0": 512,  # V100
    "7.5": 512,  # T4, RTX 20
    "8.0": 1024,  # A100, A30
    "8.6": 512,  # A10, A40, RTX 30 (GeForce halves this with FP32 accumulate)
    "8.7": 512,  # Orin
    "8.9": 512,  # L4, L40, RTX 40
    "9.0": 2048,  # H100, H200
    "10.0": 4096,  # B200
    "12.0": 1024,  # RTX 50
}


@dataclass
class Peak:
    """A peak MAC rate and the assumptions behind it."""

    macs_per_s: float
    precision: str
    assumptions: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "gmacs_per_s": round(self.macs_per_s / 1e9, 1),
            "precision": self.precision,
            "assumptions": self.assumptions,
        }


def _cpuinfo(path: str = "/proc/cpuinfo") -> list[dict[str, str]]:
    """One dict per logical CPU in /proc/cpuinfo."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    cpus, cur = [], {}
    for line in text.splitlines():
        if not line.strip():
            if cur:
                cpus.append(cur)
            cur = {}
            continue
        key, _, value = line.partition(":")
        cur[key.strip()] = value.strip()
    if cur:
        cpus.append(cur)
    return cpus


def physical_cores() -> tuple[int, str]:
    """Physical cores this process may use, and how that was decided."""
    cpus = _cpuinfo()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = {(c.get("physical id"), c.get("core id")) for c in cpus if "core id" in c}
    threads_per_core = max(1, len(cpus) // len(cores)) if cores else 1
    n = max(1, (usable or 1) // threads_per_core)
    return n, f"{usable} usable logical CPUs / {threads_per_core} thread(s) per core"


# x86-64: rcx = n; rdx = 1; 200 dependent `add rax, rdx` (1 cycle each) per iteration; dec rcx;
# jnz; ret. A register operand, not an immediate: Golden Cove (Sapphire Rapids) and later fold
# `add reg, imm` chains at rename, several per cycle, which read as a 24 GHz clock.
CLOCK_ADDS = 200
_CLOCK_LOOP = (
    bytes.fromhex("4889f94831c0ba01000000")
    + bytes.fromhex("4801d0") * CLOCK_ADDS
    + bytes.fromhex("48ffc90f85")
    + (-(3 * CLOCK_ADDS + 3 + 6)).to_bytes(4, "little", signed=True)
    + bytes.fromhex("c3")
)


def measured_clock_hz(iterations: int = 1_000_000, repeats: int = 5) -> float | None:
    """The all-core clock actually running: every core times a chain of dependent integer adds
    (one per cycle) at once, best of `repeats`. None off x86-64 or where code cannot be mapped
    executable. Under a hypervisor /proc/cpuinfo shows only the nominal clock, not turbo."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    import ctypes
    import mmap
    import threading

    try:
        prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        buf = mmap.mmap(-1, mmap.PAGESIZE, prot=prot)
    except (OSError, AttributeError, ValueError):
        return None
    buf.write(_CLOCK_LOOP)
    loop = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64)(
        ctypes.addressof(ctypes.c_char.from_buffer(buf))
    )
    rates: list[float] = []

    def run() -> None:  # ctypes releases the GIL, so the cores run side by side
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            loop(iterations)
            best = min(best, time.perf_counter() - t0)
        rates.append(iterations * CLOCK_ADDS / best)

    threads = [threading.Thread(target=run) for _ in range(physical_cores()[0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return min(rates) if rates else None


@functools.cache
def clock_hz() -> tuple[float, str]:
    """The core clock for the peak: measured with every core busy where possible, else
    cpufreq's max, else /proc/cpuinfo's 'cpu MHz' (nominal)."""
    measured = measured_clock_hz()
    if measured:
        return measured, (
            f"{measured / 1e9:.2f} GHz measured with all cores busy (dependent-add chain, "
            "best of 5; turbo included)"
        )
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(max_freq.read_text()) * 1e3, f"cpufreq max {int(max_freq.read_text()) / 1e6} GHz"
    except (OSError, ValueError):
        pass
    cpus = _cpuinfo()
    mhz = float(cpus[0].get("cpu MHz", 0)) if cpus else 0.0
    if mhz:
        return mhz * 1e6, (
            f"/proc/cpuinfo 'cpu MHz' {mhz:.0f} (no cpufreq: under a hypervisor this is the "
            "nominal clock; turbo, if any, is not counted)"
        )
    return 0.0, "no clock found (no cpufreq, no 'cpu MHz')"


def fma_per_cycle(
    precision: str, flags: frozenset[str], vendor: str, family: int
) -> tuple[int, str]:
    """Multiply-accumulates per cycle per core at `precision`, and which instructions give them."""
    amd_256bit_datapath = vendor == "AuthenticAMD" and family == 25  # Zen 4: AVX-512 double-pumped
    if precision == "int8":
        if "amx_int8" in flags:
            return 1024, "AMX TDPBSSD: 16x16x64 = 16384 int8 MAC per 16 cycles = 1024/cycle/core"
        if "avx512_vnni" in flags:
            if amd_256bit_datapath:
                return 64, "AVX512-VNNI VPDPBUSD on Zen 4 (256-bit units): 64 int8 MAC/cycle/core"
            return 128, "AVX512-VNNI VPDPBUSD, 2 ports x 64 int8 MAC/cycle/core"
        if "avx_vnni" in flags:
            return 64, "AVX-VNNI VPDPBUSD (256-bit), 2 ports x 32 int8 MAC/cycle/core"
        precision = "fp32"  # no int8 dot products: the backends refuse int8 here
    if precision == "bf16":
        if "amx_bf16" in flags:
            return 512, (
                "AMX TDPBF16PS: 16x16x32 = 8192 bf16 FMA per 16 cycles = 512 FMA/cycle/core"
            )
        if "avx512_bf16" in flags:
            if amd_256bit_datapath:
                return 32, "AVX512-BF16 VDPBF16PS on Zen 4 (256-bit units): 32 bf16 FMA/cycle/core"
            return 64, "AVX512-BF16 VDPBF16PS, 2 ports x 32 bf16 FMA/cycle/core"
        precision = "fp32"  # emulated: no faster than fp32
    if "avx512f" in flags:
        if amd_256bit_datapath:
            return 16, "AVX-512 FMA on Zen 4 (2x256-bit units): 16 fp32 FMA/cycle/core"
        return 32, "AVX-512 FMA, 2 ports x 16 fp32 FMA/cycle/core"
    if "fma" in flags:
        return 16, "AVX2 FMA, 2 ports x 8 fp32 FMA/cycle/core"
    return 4, "SSE, no FMA: ~4 fp32 MAC/cycle/core"


def cpu_peak(precision: str) -> Peak:
    """The CPU's nominal peak MAC rate at `precision` (fp32, bf16 or int8)."""
    cpus = _cpuinfo()
    first = cpus[0] if cpus else {}
    vendor = first.get("vendor_id", "")
    family = int(first.get("cpu family", 0) or 0)
    cores, cores_why = physical_cores()
    hz, hz_why = clock_hz()
    fma, fma_why = fma_per_cycle(precision, cpu_flags(), vendor, family)
    return Peak(cores * hz * fma, precision, [f"{cores} cores ({cores_why})", hz_why, fma_why])


def gpu_peak(name: str, capability: str, sms: int, clock_khz: int) -> Peak:
    """A GPU's dense FP16 tensor-core peak from its SM count, clock and compute capability."""
    per_sm = GPU_FP16_FMA_PER_SM.get(capability)
    if per_sm is None:
        return Peak(0.0, "fp16", [f"{name}: compute capability {capability} not in the table"])
    return Peak(
        sms * clock_khz * 1e3 * per_sm,
        "fp16",
        [
            f"{name}: {sms} SMs x {clock_khz / 1e6:.2f} GHz (max SM clock)",
            f"sm_{capability.replace('.', '')}: {per_sm} dense FP16 tensor FMA/cycle/SM",
        ],
    )


def library_versions() -> dict[str, str]:
    """The installed versions of LIBRARIES and of the modules the backends require."""
    required = (module for name in backend_names() for module in backend_class(name).requires)
    out = {}
    for name in dict.fromkeys((*LIBRARIES, *required)):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform.processor(), else "unknown"."""
    cpus = _cpuinfo()
    return (cpus[0] if cpus else {}).get("model name", platform.processor() or "unknown")


def describe_machine() -> dict:
    """CPU model, cores, clock, bf16/AVX-512 flags, memory, OS and library versions."""
    cpus = _cpuinfo()
    first = cpus[0] if cpus else {}
    flags = cpu_flags()
    cores, cores_why = physical_cores()
    hz, hz_why = clock_hz()
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu_model": cpu_model(),
        "cpu_vendor": first.get("vendor_id", ""),
        "logical_cpus": len(cpus) or os.cpu_count(),
        "physical_cores": cores,
        "cores_how": cores_why,
        "clock_ghz": round(hz / 1e9, 3),
        "clock_how": hz_why,
        "flags": {
            f: f in flags
            for f in ("amx_bf16", "amx_int8", "amx_tile", "avx512_bf16", "avx512_vnni", "avx512f")
            + ("avx_vnni", "fma")
        },
        "memory_gib": round(mem_kb / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": library_versions(),
        "peak": {p: cpu_peak(p).to_json() for p in ("fp32", "bf16", "int8")},
    }
