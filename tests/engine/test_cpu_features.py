"""CPU flag detection decides whether bf16 may be used; it must read real cpuinfo layouts."""

from p2phd.engine.core.cpu_features import cpu_flags


def test_reads_x86_flags_and_tolerates_a_missing_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx512f amx_bf16 sse2\n")
    assert {"amx_bf16", "avx512f"} <= cpu_flags(info)
    assert "avx512_bf16" not in cpu_flags(info)
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_reads_arm_features_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert "bf16" in cpu_flags(info)
