"""The kernels' source compiled to SASS, as the GPU path gets it: by NVRTC at first use (where
cuda-python 12 and its NVRTC are installed) and by nvcc with the same options (where nvcc is).

Each image must be a cubin for the exact architecture asked (not PTX, which a driver older than
the compiler refuses) holding every entry point the Python host code launches.
"""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from p2phd.common.errors import BackendUnavailable
from p2phd.engine.core import cuda_runtime
from p2phd.engine.kernels import cubin, cuda

EM_CUDA = 190


def cubin_arch(image: bytes) -> int:
    """The SM version a cubin's ELF header names (e.g. 90), checking it is a CUDA ELF."""
    assert image[:4] == cubin.ELF_MAGIC, image[:16]
    assert struct.unpack_from("<H", image, 18)[0] == EM_CUDA
    flags = struct.unpack_from("<I", image, 48)[0]
    abi = image[8]  # the CUDA ELF ABI version moved the SM field in ABI 8 (CUDA 13)
    return (flags >> 8) & 0xFF if abi >= 8 else flags & 0xFF


def assert_every_entry_point(image: bytes) -> None:
    missing = [name for name in cuda.SIGNATURES if name.encode() + b"\0" not in image]
    assert not missing, f"the cubin lacks {missing}"


def test_nvrtc_options_ask_for_sass_of_the_exact_architecture():
    assert "--gpu-architecture=sm_90" in cubin.options((9, 0))
    assert "--gpu-architecture=sm_120" in cubin.options((12, 0))
    assert not any("compute_" in o for o in cubin.options((8, 6)))


def test_the_source_includes_only_what_nvrtc_is_handed(tmp_path):
    """NVRTC has no C library headers and sees only the files `cubin.sources()` gives it: the
    source, preprocessed as NVRTC does with nothing else on the include path, must need no
    more (nvcc would accept a <stdint.h> that fails on the GPU at first use)."""
    for name, text in cubin.sources().items():
        (tmp_path / name).write_bytes(text)
    command = ["g++", "-x", "c++", "-E", "-nostdinc", "-D__CUDACC_RTC__", "-D__CUDACC__"]
    command += ["-D__CUDA_ARCH__=900", f"-I{tmp_path}", str(tmp_path / cubin.SOURCE)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_nvcc_compiles_the_kernels_alone_with_the_nvrtc_options(tmp_path):
    """The .cu needs no launcher and no CUDA runtime header: nvcc makes the cubin by itself."""
    out = tmp_path / "kernels.cubin"
    command = ["nvcc", "-cubin", *cubin.options((9, 0)), "-Werror=all-warnings"]
    command += [str(cubin.SOURCE_DIR / cubin.SOURCE), "-o", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    image = out.read_bytes()
    assert cubin_arch(image) == 90
    assert_every_entry_point(image)


@pytest.fixture
def nvrtc(monkeypatch, tmp_path):
    """NVRTC's version, with the test's own engine cache."""
    monkeypatch.setenv("P2PHD_CACHE", str(tmp_path))
    try:
        return cuda_runtime.check(cuda_runtime.nvrtc().nvrtcVersion())
    except ImportError:
        pytest.skip("cuda-python is not installed (the gpu extra)")
    except Exception as e:  # cuda-python's own error when libnvrtc is missing
        pytest.skip(f"NVRTC is not installed: {e}")


@pytest.mark.parametrize("arch", [(8, 0), (9, 0), (12, 0)])
def test_nvrtc_compiles_a_cubin_for_the_gpu(nvrtc, arch):
    if tuple(nvrtc) < (12, 8) and arch >= (10, 0):
        pytest.skip(f"NVRTC {nvrtc} predates Blackwell")
    image = cubin.compile_cubin(arch)
    assert cubin_arch(image) == arch[0] * 10 + arch[1]
    assert_every_entry_point(image)


def test_the_cubin_is_cached_by_source_nvrtc_and_arch(nvrtc, monkeypatch):
    first = cubin.cubin((9, 0), driver=12020)  # a CUDA 12.2 (R535) driver
    path = cubin.cache_path((9, 0), tuple(nvrtc))
    assert path.exists() and path.parent.parent == cubin.compiled_cache.cache_root()

    def no_compile(arch):
        raise AssertionError("compiled again")

    monkeypatch.setattr(cubin, "compile_cubin", no_compile)
    assert cubin.cubin((9, 0), driver=12020) == first  # a restart compiles nothing
    assert cubin.cache_path((8, 9), tuple(nvrtc)) != path
    sources = cubin.sources()
    monkeypatch.setattr(cubin, "sources", lambda: {**sources, cubin.SOURCE: b"// changed\n"})
    assert cubin.cache_path((9, 0), tuple(nvrtc)) != path  # a changed source compiles anew


def test_a_compile_error_is_reported_with_nvrtcs_log(nvrtc, monkeypatch):
    sources = cubin.sources()
    broken = sources[cubin.SOURCE] + b"\nint broken = undefined_name;\n"
    monkeypatch.setattr(cubin, "sources", lambda: {**sources, cubin.SOURCE: broken})
    with pytest.raises(BackendUnavailable, match=r"(?s)could not compile .*undefined_name"):
        cubin.compile_cubin((9, 0))


def test_nvrtc_that_the_driver_or_gpu_cannot_use_is_named():
    archs = [75, 80, 86, 89, 90]
    with pytest.raises(BackendUnavailable, match=r"NVRTC 13.0 .* supports CUDA 12.4.*<13"):
        cubin.check_target((13, 0), archs, (9, 0), driver=12040)
    with pytest.raises(BackendUnavailable, match=r"cannot compile for sm_120 .*--upgrade"):
        cubin.check_target((12, 4), archs, (12, 0), driver=12080)
    cubin.check_target((12, 4), archs, (9, 0), driver=13000)  # a CUDA 13 driver runs CUDA 12
