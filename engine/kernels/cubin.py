"""The CUDA kernels' machine code: `csrc/kernels_cuda.cu` compiled by NVRTC for one GPU, cached.

Nothing CUDA is built when p2phd is installed. At first use the kernels' source is compiled with
NVRTC (cuda-python 12's `nvrtc`, the library from the nvidia-cuda-nvrtc-cu12 wheel) straight to
a cubin, SASS for the device's exact architecture (sm_XY), never PTX: a CUDA 12.x cubin loads
on any CUDA 12 driver (R525+) and on newer drivers through minor-version compatibility, while
PTX from a newer NVRTC than the driver is refused ("unsupported PTX version").

The cubin is cached in the engine cache ($P2PHD_CACHE, else ~/.cache/p2phd) under the sha256 of
the sources, the NVRTC version, the architecture and the options, written atomically, so a
restart compiles nothing and a changed source or NVRTC compiles anew.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from p2phd.common.errors import BackendUnavailable
from p2phd.engine.core import compiled_cache, cuda_runtime

SOURCE_DIR = Path(__file__).with_name("csrc")
SOURCE = "kernels_cuda.cu"
HEADERS = ("kernel_math.h",)  # what SOURCE includes, handed to NVRTC by name
NVRTC_PACKAGE = "nvidia-cuda-nvrtc-cu12"
ELF_MAGIC = b"\x7fELF"
CACHE_FOLDER = "cuda-kernels"


def options(arch: tuple[int, int]) -> list[str]:
    """NVRTC options for compute capability `arch`: a real architecture (sm_XY), so the result
    is SASS for exactly that GPU; the same language standard `make cuda-check` compiles with."""
    major, minor = arch
    return [f"--gpu-architecture=sm_{major}{minor}", "-std=c++17"]


def sources() -> dict[str, bytes]:
    """The kernels' source and the headers it includes, by file name."""
    return {name: (SOURCE_DIR / name).read_bytes() for name in (SOURCE, *HEADERS)}


def cache_key(arch: tuple[int, int], nvrtc_version: tuple[int, int]) -> str:
    """sha256 of everything that decides the cubin: sources, NVRTC version, arch, options."""
    h = hashlib.sha256()
    for name, text in sorted(sources().items()):
        h.update(name.encode() + b"\0" + hashlib.sha256(text).digest())
    h.update(repr((nvrtc_version, arch, options(arch))).encode())
    return h.hexdigest()


def _nvrtc():
    """The NVRTC module and its version, or BackendUnavailable saying what to install."""
    try:
        nvrtc = cuda_runtime.nvrtc()
    except ImportError as e:
        raise BackendUnavailable(
            f"CUDA kernels: cuda-python is not installed ({e}); pip install 'p2phd[gpu]'"
        ) from e
    try:
        version = cuda_runtime.check(nvrtc.nvrtcVersion())
    except Exception as e:  # cuda-python raises its own error type when libnvrtc is missing
        raise BackendUnavailable(
            f"CUDA kernels: NVRTC not found ({e}); pip install {NVRTC_PACKAGE}"
        ) from e
    return nvrtc, tuple(version)


def check_target(
    nvrtc_version: tuple[int, int], supported: list[int], arch: tuple[int, int], driver: int
) -> None:
    """Raise BackendUnavailable when this NVRTC cannot make a cubin that this driver loads for
    this GPU. `driver` is cuDriverGetVersion's value (12040 for CUDA 12.4)."""
    text = ".".join(map(str, nvrtc_version))
    if nvrtc_version[0] > driver // 1000:
        raise BackendUnavailable(
            f"CUDA kernels: NVRTC {text} makes code for CUDA {nvrtc_version[0]} drivers, this "
            f"driver supports CUDA {cuda_runtime.version_text(driver)}; pip install "
            f"'{NVRTC_PACKAGE}<{driver // 1000 + 1}' or upgrade the NVIDIA driver"
        )
    sm = arch[0] * 10 + arch[1]
    if sm not in supported:
        raise BackendUnavailable(
            f"CUDA kernels: NVRTC {text} cannot compile for sm_{sm} (it knows sm_{min(supported)}"
            f"..sm_{max(supported)}); pip install --upgrade {NVRTC_PACKAGE}"
        )


def compile_cubin(arch: tuple[int, int]) -> bytes:
    """The kernels compiled by NVRTC for `arch`; BackendUnavailable with NVRTC's log on error."""
    nvrtc, _ = _nvrtc()
    check = cuda_runtime.check
    src = sources()
    names = list(HEADERS)
    prog = check(
        nvrtc.nvrtcCreateProgram(
            src[SOURCE], SOURCE.encode(), len(names), [src[n] for n in names],
            [n.encode() for n in names],
        )
    )  # fmt: skip
    try:
        opts = [o.encode() for o in options(arch)]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            size = check(nvrtc.nvrtcGetProgramLogSize(prog))
            log = b" " * size
            check(nvrtc.nvrtcGetProgramLog(prog, log))
            text = log.rstrip(b"\0 \n").decode(errors="replace")
            raise BackendUnavailable(
                f"CUDA kernels: NVRTC could not compile {SOURCE} for sm_{arch[0]}{arch[1]} "
                f"({err.name}):\n{text}"
            )
        size = check(nvrtc.nvrtcGetCUBINSize(prog))
        image = b" " * size
        check(nvrtc.nvrtcGetCUBIN(prog, image))
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    return image


def cache_path(arch: tuple[int, int], nvrtc_version: tuple[int, int]) -> Path:
    """Where the cubin for `arch` from this NVRTC is cached."""
    key = cache_key(arch, nvrtc_version)
    return compiled_cache.cache_root() / CACHE_FOLDER / f"sm{arch[0]}{arch[1]}-{key[:32]}.cubin"


def cubin(arch: tuple[int, int], driver: int) -> bytes:
    """The kernels' cubin for compute capability `arch`, from the cache or compiled now.

    `driver` is the CUDA version the driver supports (cuDriverGetVersion), checked against
    NVRTC's before anything is compiled.
    """
    nvrtc, version = _nvrtc()
    supported = list(cuda_runtime.check(nvrtc.nvrtcGetSupportedArchs()))
    check_target(version, supported, arch, driver)
    path = cache_path(arch, version)
    image = compiled_cache.read_entry(path)
    if image is None or not image.startswith(ELF_MAGIC):
        image = compile_cubin(arch)
        compiled_cache.write_entry(path, image)
    return image
