"""The machine's peak: FMA widths per instruction set, and peak = cores x clock x width."""

from __future__ import annotations

import pytest

from p2phd.engine.apps.bench.machine import (
    clock_hz,
    cpu_peak,
    describe_machine,
    fma_per_cycle,
    gpu_peak,
    measured_clock_hz,
    physical_cores,
)
from p2phd.engine.core.cpu_features import cpu_flags

SPR = frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "fma"})
ZEN4 = frozenset({"avx512f", "avx512_bf16", "fma"})
AVX2 = frozenset({"avx2", "fma"})


@pytest.mark.parametrize(
    ("precision", "flags", "vendor", "family", "expected"),
    [
        ("bf16", SPR, "GenuineIntel", 6, 512),  # AMX TDPBF16PS: 8192 FMA per 16 cycles
        ("fp32", SPR, "GenuineIntel", 6, 32),  # 2 x 16 fp32 AVX-512 FMA
        ("bf16", ZEN4, "AuthenticAMD", 25, 32),  # VDPBF16PS on 256-bit units
        ("fp32", ZEN4, "AuthenticAMD", 25, 16),
        ("bf16", AVX2, "GenuineIntel", 6, 16),  # no native bf16: the fp32 rate
    ],
)
def test_fma_width_per_instruction_set(precision, flags, vendor, family, expected):
    width, why = fma_per_cycle(precision, flags, vendor, family)
    assert width == expected and why


def test_cpu_peak_is_cores_times_clock_times_width():
    cores, _ = physical_cores()
    hz, _ = clock_hz()
    for precision in ("fp32", "bf16"):
        peak = cpu_peak(precision)
        widths = {
            fma_per_cycle(precision, cpu_flags(), v, f)[0]
            for v, f in (("GenuineIntel", 6), ("AuthenticAMD", 25), ("AuthenticAMD", 26))
        }
        assert any(peak.macs_per_s == pytest.approx(cores * hz * w) for w in widths)
        assert len(peak.assumptions) == 3


def test_gpu_peak_from_capability_table():
    # H100 SXM: 132 SMs at 1.98 GHz, 2048 FP16 FMA/cycle/SM -> ~535 TMAC/s (~1070 TFLOP/s boost)
    peak = gpu_peak("H100", "9.0", 132, 1_980_000)
    assert peak.macs_per_s == pytest.approx(132 * 1.98e9 * 2048)
    assert gpu_peak("future", "99.0", 10, 1_000_000).macs_per_s == 0


def test_machine_description_names_cpu_flags_and_libraries():
    d = describe_machine()
    assert d["physical_cores"] >= 1 and d["memory_gib"] > 0
    assert set(d["flags"]) >= {"amx_bf16", "avx512_bf16"}
    assert "numpy" in d["libraries"]
    assert d["peak"]["bf16"]["gmacs_per_s"] >= d["peak"]["fp32"]["gmacs_per_s"] > 0


def test_measured_clock_is_a_plausible_cpu_clock():
    import platform

    hz = measured_clock_hz(iterations=200_000, repeats=3)
    if platform.machine() != "x86_64":
        assert hz is None
        return
    assert hz is not None and 0.5e9 < hz < 7e9
