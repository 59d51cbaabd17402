"""CPU instruction-set detection: whether this CPU computes bf16 natively (AMX or AVX512-BF16).

OpenVINO runs bf16 fast only with these instructions; elsewhere it would emulate, so the engine
asks here before choosing a bf16 precision.
"""

from __future__ import annotations

import functools
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where the file is absent)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def bf16_instructions() -> list[str]:
    """The bf16 instruction sets this CPU has, e.g. ``["amx_bf16", "avx512_bf16"]``."""
    flags = cpu_flags()
    return [f for f in BF16_FLAGS if f in flags]


def has_native_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16."""
    return bool(bf16_instructions())
