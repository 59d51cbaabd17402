"""The CUDA kernels' own source run on the CPU, as a `Device` for `cuda.Kernels`.

emulation/emulated_kernels.cpp includes engine/kernels/csrc/kernels_cuda.cu unchanged, with
emulation/cuda_host_shim.h for the CUDA names, and runs each launch's grid as loops. It is built
here with the system g++ (no nvcc, no GPU). "Device memory" is host memory (NumPy arrays), so
the same Python launch code that drives a GPU (grid sizes, workspace, argument packing, status
read-back) runs over it. With SANITIZE set the build has AddressSanitizer and UBSan, and the
process must have libasan preloaded (`sanitizer_env`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from p2phd.engine.kernels import cubin
from p2phd.engine.kernels.cuda import DeviceArray, KernelParams

HERE = Path(__file__).with_name("emulation")
CXX = os.environ.get("CXX", "g++")
SANITIZE = os.environ.get("P2PHD_EMULATION_SANITIZE") == "1"
SANITIZER_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]


def build(out_dir: Path, sanitize: bool = SANITIZE) -> Path:
    """Compile the emulation library into `out_dir`; warnings are errors here (a test build)."""
    if shutil.which(CXX) is None:
        raise FileNotFoundError(f"{CXX} not found: the kernel emulation needs a C++ compiler")
    library = out_dir / ("emulated_kernels_san.so" if sanitize else "emulated_kernels.so")
    command = [CXX, "-std=c++17", "-O1", "-g", "-fPIC", "-shared", "-fno-omit-frame-pointer"]
    command += ["-Wall", "-Wextra", "-Werror", f"-I{cubin.SOURCE_DIR}", f"-I{HERE}"]
    command += SANITIZER_FLAGS if sanitize else []
    command += [str(HERE / "emulated_kernels.cpp"), "-o", str(library)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return library


def sanitizer_env() -> dict[str, str]:
    """The environment of a Python process that loads a sanitized build: libasan first."""
    libasan = subprocess.run(
        [CXX, "-print-file-name=libasan.so"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return {
        **os.environ,
        "LD_PRELOAD": libasan,
        "ASAN_OPTIONS": "detect_leaks=0",  # the interpreter keeps its own memory at exit
        "UBSAN_OPTIONS": "print_stacktrace=1",
        "P2PHD_EMULATION_SANITIZE": "1",
    }


class Emulator:
    """A `cuda.Device` that runs each launch's whole grid on the calling thread, at once."""

    def __init__(self, library: Path, reverse: bool = False):
        self.lib = ctypes.CDLL(str(library))
        self.lib.p2phd_emulate.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
        self.lib.p2phd_emulate.argtypes += [ctypes.c_void_p, ctypes.c_int]
        self.lib.p2phd_emulated_signature.argtypes = [
            ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_int
        ]  # fmt: skip
        self.reverse = reverse
        self.launches: list[tuple[str, int, int]] = []  # (kernel, blocks, threads)

    def launch(self, kernel: str, blocks: int, threads: int, params: int, stream: int) -> None:
        self.launches.append((kernel, blocks, threads))
        rc = self.lib.p2phd_emulate(kernel.encode(), blocks, threads, params, self.reverse)
        if rc != 0:
            raise LookupError(f"the emulation has no kernel {kernel}")

    def memset(self, ptr: int, value: int, nbytes: int, stream: int) -> None:
        ctypes.memset(ptr, value, nbytes)

    def read(self, ptr: int, nbytes: int, stream: int) -> bytes:
        return ctypes.string_at(ptr, nbytes)

    def signature(self, kernel: str) -> list[int] | None:
        """The byte sizes of the kernel's parameters as the C++ declares them, or None."""
        sizes = (ctypes.c_size_t * 16)()
        n = self.lib.p2phd_emulated_signature(kernel.encode(), sizes, 16)
        return None if n < 0 else list(sizes[:n])

    def run(self, kernel: str, blocks: int, threads: int, *args) -> None:
        """Launch `kernel` directly, its arguments packed as for cuLaunchKernel."""
        params = KernelParams(kernel, args)  # alive until the launch returns
        self.launch(kernel, blocks, threads, params.address, 0)


def device(a: np.ndarray) -> DeviceArray:
    """A NumPy array as the emulation's device memory."""
    assert a.flags.c_contiguous
    return DeviceArray(a.ctypes.data, a.shape, a.dtype)
