"""What this machine can run, and for anything broken what to install or upgrade.

One probe per layer of the stack: the GPU and its driver, the CUDA runtime (cuda-python),
TensorRT, ONNX Runtime and its CUDA execution provider, OpenVINO, the CPU's bf16/int8
instructions, the CUDA kernels and PyTorch's CUDA (training). `p2phd doctor` prints them, and
the test suite's `gpu` marker fails (rather than skips) when a GPU is visible but what a test
needs is broken. The machine facts themselves (installed builds, GPUs, driver) come from
engine/core/platform, which the backends read too; this module gives them a status and a fix.
Probes never raise: a failure is a fact.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from p2phd.engine.core import platform
from p2phd.engine.core.cpu_features import cpu_flags

OK, ABSENT, BROKEN, INFO = "ok", "absent", "broken", "info"
# Oldest driver branch the CUDA 12 stack is built for: R535 = CUDA 12.2 (the H100 fleets'
# long-term branch); CUDA 12 programs run on CUDA 12.x and 13.x drivers alike.
MIN_DRIVER = 535
GPU_EXTRA = "pip install -e '.[gpu]'"
TORCH_CUDA_FIX = "make gpu-check installs torch's CUDA 12 build (see TORCH_INDEX in the Makefile)"
CPU_INSTRUCTIONS = {
    "amx_bf16": "AMX-BF16",
    "avx512_bf16": "AVX512-BF16",
    "amx_int8": "AMX-INT8",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
}


@dataclass(frozen=True)
class Fact:
    """One line of the report: what was checked, its status, what was found, and the fix."""

    name: str
    status: str  # OK, ABSENT (not here; fine for the CPU path), BROKEN, or INFO
    found: str
    fix: str = ""
    gpu: bool = False  # part of the GPU path
    optional: bool = False  # the GPU path works without it (ONNX Runtime's CUDA provider)

    @property
    def problem(self) -> bool:
        """Broken, or a required part of the GPU path missing."""
        return self.status == BROKEN or (self.status == ABSENT and self.gpu and not self.optional)


# -- the facts (the probes they read are in engine/core/platform; the tests fake those) --------


def gpu_fact() -> Fact:
    found = platform.gpu_line()
    if platform.nvidia_smi():
        return Fact("GPU", OK, found, gpu=True)
    if platform.device_nodes():
        fix = "install the NVIDIA driver's utilities (nvidia-smi) or fix the driver"
        return Fact("GPU", BROKEN, found, fix, gpu=True)
    return Fact("GPU", ABSENT, found, gpu=True)


def driver_fact() -> Fact:
    gpus = platform.nvidia_smi()
    cuda = platform.driver_cuda_version()
    found = platform.driver_line()
    if not gpus and cuda is None:
        return Fact("driver", ABSENT, found, gpu=True)
    if cuda is None:
        return Fact("driver", BROKEN, found, "install the NVIDIA driver (libcuda.so.1)", gpu=True)
    if (gpus and gpus[0].driver_branch < MIN_DRIVER) or cuda < (12, 2):
        fix = f"upgrade the NVIDIA driver to R{MIN_DRIVER} or newer"
        return Fact("driver", BROKEN, found, fix, gpu=True)
    return Fact("driver", OK, found, gpu=True)


def cuda_runtime_fact() -> Fact:
    fact = functools.partial(Fact, "CUDA runtime", gpu=True)

    dists = platform.installed("cuda-bindings", "cuda-python")
    if not dists:
        return fact(ABSENT, "cuda-python not installed", GPU_EXTRA)
    name, version = dists[0]
    driver = platform.driver_cuda_version()
    major = int(version.split(".")[0])
    if major >= 13 and driver is not None and driver[0] < major:
        found = f"{name} {version} (CUDA {major}) on a CUDA {driver[0]} driver"
        return fact(BROKEN, found, f"{GPU_EXTRA} (cuda-python 12; CUDA {major} needs R580+)")
    try:
        from p2phd.engine.core import cuda_runtime

        rt = cuda_runtime.runtime()
        runtime_version = cuda_runtime.check(rt.cudaRuntimeGetVersion())
        count = cuda_runtime.check(rt.cudaGetDeviceCount())
    except Exception as e:  # ImportError, CudaError: either way the runtime is unusable
        fix = GPU_EXTRA if isinstance(e, ImportError) else "see the driver line; run nvidia-smi"
        return fact(BROKEN, f"{name} {version}: {type(e).__name__}: {e}", fix)
    cuda = cuda_runtime.version_text(runtime_version)
    return fact(OK, f"{name} {version}, runtime CUDA {cuda}, {count} device(s)")


def tensorrt_fact() -> Fact:
    fact = functools.partial(Fact, "TensorRT", gpu=True)

    builds = platform.installed("tensorrt-cu12", "tensorrt-cu13")
    if not builds:
        return fact(ABSENT, "not installed", GPU_EXTRA)
    found = " and ".join(f"{name} {version}" for name, version in builds)
    if len(builds) > 1:  # both install the `tensorrt` package into one directory
        parts = " ".join(f"tensorrt-{cu} tensorrt-{cu}-libs tensorrt-{cu}-bindings"
                         for cu in ("cu12", "cu13"))  # fmt: skip
        return fact(BROKEN, f"{found} installed over each other",
                    f"pip uninstall -y tensorrt {parts} && {GPU_EXTRA}")  # fmt: skip
    name, version = builds[0]
    driver = platform.driver_cuda_version()
    if name == "tensorrt-cu13" and driver is not None and driver[0] < 13:
        fix = f"pip uninstall -y tensorrt {name} {name}-libs {name}-bindings && {GPU_EXTRA}"
        return fact(BROKEN, f"{found} (a CUDA 13 build) on a CUDA {driver[0]} driver", fix)
    try:
        import tensorrt as trt

        builder = trt.Builder(trt.Logger(trt.Logger.ERROR))  # initialises CUDA
        if builder is None:
            raise RuntimeError("trt.Builder returned None")
    except Exception as e:
        return fact(BROKEN, f"{found}: {type(e).__name__}: {e}", GPU_EXTRA)
    return fact(OK, f"{found}, the builder initialises")


def onnxruntime_fact() -> Fact:
    try:
        import onnxruntime as ort
    except ImportError:
        return Fact("ONNX Runtime", BROKEN, "not installed", "pip install onnxruntime")
    from p2phd.engine.backends import onnxruntime as backend

    builds = backend.installed_builds()
    if len(builds) > 1:  # either build's files may be the ones that run, CPU or CUDA
        found = f"{' and '.join(builds)} installed over each other"
        fix = f"for the GPU: {backend.REINSTALL}; for the CPU only: the same with onnxruntime"
        return Fact("ONNX Runtime", BROKEN, found, fix)
    providers = ", ".join(ort.get_available_providers())
    found = f"{', '.join(builds) or ort.__version__}, providers {providers}"
    return Fact("ONNX Runtime", OK, found)


def onnxruntime_cuda_fact() -> Fact:
    """Whether ONNX Runtime's CUDA execution provider really initialises (a one-node session).
    Optional: TensorRT is the GPU path; this serves `--backend onnxruntime` on a GPU."""
    from p2phd.engine.backends import onnxruntime as backend

    fact = functools.partial(Fact, "ONNX Runtime CUDA", gpu=True, optional=True)

    if len(backend.installed_builds()) > 1:
        return fact(BROKEN, "see the ONNX Runtime line")
    if not backend.DRIVER_FILE.exists():
        return fact(ABSENT, "no NVIDIA driver is loaded")
    if backend.cuda_unavailable_reason() is not None:
        return fact(ABSENT, "the CPU build of onnxruntime is installed", backend.REINSTALL)
    try:
        backend.cuda_session(_one_node_model())
    except Exception as e:
        return fact(BROKEN, str(e), backend.REINSTALL)
    return fact(OK, "the CUDA execution provider initialises")


def _one_node_model() -> bytes:
    from onnx import TensorProto, helper  # the train and bench extras have onnx

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def torch_cuda_fact() -> Fact:
    """Whether PyTorch sees the GPU: training there (`p2phd train ... device=cuda`). Optional:
    serving never needs torch."""
    fact = functools.partial(Fact, "PyTorch CUDA", gpu=True, optional=True)

    if not platform.installed("torch"):
        return fact(ABSENT, "torch not installed (training needs the train extra)")
    try:
        import torch

        version = torch.__version__
        if torch.version.cuda is None:
            return fact(ABSENT, f"torch {version} is a CPU build", TORCH_CUDA_FIX)
        if not torch.cuda.is_available():
            return fact(BROKEN, f"torch {version} (CUDA {torch.version.cuda}) sees no GPU",
                        "see the driver line; run nvidia-smi")  # fmt: skip
        name = torch.cuda.get_device_name(0)
    except Exception as e:
        return fact(BROKEN, f"{type(e).__name__}: {e}", TORCH_CUDA_FIX)
    return fact(OK, f"torch {version}, CUDA {torch.version.cuda}, sees {name}")


def openvino_fact() -> Fact:
    try:
        import openvino as ov

        devices = ov.Core().available_devices
    except Exception as e:  # not installed, or its plugins fail to load
        return Fact("OpenVINO", BROKEN, f"{type(e).__name__}: {e}", "pip install openvino")
    return Fact("OpenVINO", OK, f"{ov.get_version()}, devices {', '.join(devices)}")


def cpu_fact() -> Fact:
    flags = cpu_flags()
    have = [label for flag, label in CPU_INSTRUCTIONS.items() if flag in flags]
    missing = [label for flag, label in CPU_INSTRUCTIONS.items() if flag not in flags]
    found = f"has {', '.join(have) or 'none of them'}; lacks {', '.join(missing) or 'none'}"
    bf16 = "amx_bf16" in flags or "avx512_bf16" in flags
    return Fact("CPU", INFO, found + ("" if bf16 else " (OpenVINO bf16 would be emulated: fp32)"))


def kernels_fact() -> Fact:
    from p2phd.engine.kernels import cuda

    reason = cuda.unavailable_reason()
    if reason is None:
        return Fact("CUDA kernels", OK, "load and run", gpu=True)
    if platform.gpu_visible() is None:
        return Fact("CUDA kernels", ABSENT, reason, gpu=True)
    return Fact("CUDA kernels", BROKEN, reason, "see the CUDA runtime and driver lines", gpu=True)


def auto_fact() -> Fact:
    from p2phd.common.errors import BackendUnavailable
    from p2phd.engine.backends import choose_backend

    try:
        name, why = choose_backend("auto")
    except BackendUnavailable as e:
        return Fact("backend auto", BROKEN, str(e), "pip install openvino onnxruntime")
    return Fact("backend auto", INFO, f"{name} ({why})")


GPU_PROBES = (gpu_fact, driver_fact, cuda_runtime_fact, tensorrt_fact, onnxruntime_cuda_fact,
              kernels_fact, torch_cuda_fact)  # fmt: skip
PROBES = (gpu_fact, driver_fact, cuda_runtime_fact, tensorrt_fact, onnxruntime_fact,
          onnxruntime_cuda_fact, openvino_fact, cpu_fact, kernels_fact, torch_cuda_fact,
          auto_fact)  # fmt: skip


def collect(probes=PROBES) -> list[Fact]:
    """Run `probes`. Without a visible GPU the GPU path is absent, not broken, and its fixes
    are not shown: nothing on it is expected to work."""
    facts = [probe() for probe in probes]
    if platform.gpu_visible() is None:
        facts = [replace(f, status=ABSENT, fix="") if f.gpu else f for f in facts]
    return facts


def gpu_problems() -> list[Fact]:
    """Where a GPU is visible: the GPU-path facts that are broken or missing (CUDA, TensorRT or
    the kernels cannot initialise). Empty where all work, and where no GPU is visible."""
    if platform.gpu_visible() is None:
        return []
    return [f for f in collect(GPU_PROBES) if f.problem]


def cpu_path_works(facts: list[Fact]) -> bool:
    return any(f.name in ("OpenVINO", "ONNX Runtime") and f.status == OK for f in facts)


def report(facts: list[Fact]) -> str:
    """The facts as aligned lines, each with its fix (what to install or upgrade) under it."""
    width = max(len(f.name) for f in facts)
    lines = []
    for f in facts:
        lines.append(f"{f.name:<{width}}  {f.status:<6}  {f.found}")
        if f.fix and f.status in (BROKEN, ABSENT):
            lines.append(f"{'':<{width}}  {'fix:':<6}  {f.fix}")
    return "\n".join(lines)
