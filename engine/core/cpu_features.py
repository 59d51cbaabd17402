"""CPU instruction-set detection: whether this CPU computes bf16 (AMX or AVX512-BF16) and int8
(AMX-INT8 or VNNI) natively.

OpenVINO runs bf16 fast only with these instructions; elsewhere it would emulate, so the engine
asks here before choosing a bf16 precision.
"""

from __future__ import annotations

import functools
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# int8 dot-product instructions: without them int8 convolutions saturate (u8 x s8 pairs summed
# into int16) unless the graph halves its weight range (NNCF's overflow fix, which ours omits).
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


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


def int8_instructions() -> list[str]:
    """The int8 dot-product instruction sets this CPU has, e.g. ``["avx512_vnni", "avx_vnni"]``."""
    flags = cpu_flags()
    return [f for f in INT8_FLAGS if f in flags]


def int8_unsupported() -> str | None:
    """None where this CPU runs the int8 graph as calibrated (VNNI or AMX), else why not."""
    if int8_instructions():
        return None
    return (
        "this CPU has neither AMX-INT8 nor VNNI (flags amx_int8, avx512_vnni, avx_vnni): its int8 "
        "convolutions would saturate, and the int8 graph was calibrated without the overflow fix"
    )


def has_native_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16."""
    return bool(bf16_instructions())
