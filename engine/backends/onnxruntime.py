"""ONNX Runtime: the CPU execution provider (graph-optimized model cached by `build` in the engine
cache, with its own sha256: a changed one is ignored, never run), or the CUDA
execution provider when onnxruntime-gpu (alone, not beside onnxruntime) and a GPU are present and
the session really runs on it; inputs and outputs go through IO
binding so the output buffer is not re-allocated per call on the device.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from p2phd.common.errors import BackendUnavailable
from p2phd.engine.backends.base import Backend
from p2phd.engine.core import compiled_cache
from p2phd.engine.core.cpu_features import int8_unsupported
from p2phd.engine.core.platform import installed

log = logging.getLogger(__name__)

# ONNX Runtime's CUDA build, for CUDA 12 like the rest of the GPU stack: 1.19-1.26 are CUDA 12
# builds (1.27 on are CUDA 13, R580+ drivers only); 1.21 is the first whose [cuda,cudnn] extras
# install the CUDA 12 runtime, cuBLAS and cuDNN 9 wheels it needs. It installs into the same
# `onnxruntime/` directory as the CPU build, so it replaces that build rather than joining it.
CUDA_BUILD = "onnxruntime-gpu[cuda,cudnn]>=1.21,<1.27"
DRIVER_FILE = Path("/proc/driver/nvidia/version")  # present while the NVIDIA driver is loaded
REINSTALL = f'pip uninstall -y onnxruntime onnxruntime-gpu && pip install "{CUDA_BUILD}"'


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8")
    reduced = "fp16"
    auto = True
    requires = {"onnxruntime": "pip install onnxruntime"}
    variant_precisions = ("fp16", "int8")

    def load_impl(self) -> None:
        import onnxruntime as ort

        self._ort = ort
        why_not_cuda = cuda_unavailable_reason()
        # int8 runs on the CPU execution provider (VNNI/AMX), the graph it was calibrated for
        self.cuda = why_not_cuda is None and self.precision != "int8"
        if len(installed_builds()) > 1:
            log.warning("onnxruntime: %s", why_not_cuda)
        self.session = self._session()
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.binding = self.session.io_binding()
        self._device_input = None

    @classmethod
    def reduced_unsupported_impl(cls, precision: str) -> str | None:
        reason = cuda_unavailable_reason() if precision == "fp16" else None
        if reason:
            return f"onnxruntime fp16 runs on the CUDA execution provider only ({reason})"
        if precision == "int8" and int8_unsupported():
            return f"onnxruntime int8 runs on the CPU: {int8_unsupported()}"
        return None

    def cache_key(self) -> str:
        return f"onnxruntime-{self._ort.__version__}-{self.device()}"

    @property
    def optimized_path(self) -> Path:
        """The CPU graph-optimized model in the engine cache (keyed by the package's hash)."""
        return self.engine_dir() / self._optimized_name

    @property
    def _optimized_name(self) -> str:
        return f"{self.source.stem}.cpu-opt.onnx"

    def _optimized_model(self) -> bytes | None:
        """The cached optimized model, verified against its own sha256 (None: use the source)."""
        folder = self.cache_folder()
        return None if folder is None else compiled_cache.read_entry(folder / self._optimized_name)

    def _options(self, level):
        """CPU session options. No memory arena: it grows to the largest shape ever run and
        keeps it; without it, large buffers go back to the system when a call ends (the
        reliability tests check it; commit a500b8f has the measurement)."""
        opts = self._ort.SessionOptions()
        opts.graph_optimization_level = level
        opts.enable_cpu_mem_arena = False
        return opts

    def _session(self):
        ort = self._ort
        self.loaded_from = self.source
        if self.cuda:
            return cuda_session(self.source)
        # The cached model holds the portable (extended) rewrites; layout ones are redone here.
        optimized = self._optimized_model()
        if optimized is not None:
            self.loaded_from = self.optimized_path
        opts = self._options(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        model = str(self.source) if optimized is None else optimized
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    def build(self) -> list[Path]:
        if self.cuda:
            return []
        target = self.optimized_path
        opts = self._options(self._ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        with tempfile.TemporaryDirectory(prefix="p2phd-ort-") as tmp:
            opts.optimized_model_filepath = str(Path(tmp) / target.name)
            self._ort.InferenceSession(str(self.source), opts, providers=["CPUExecutionProvider"])
            compiled_cache.write_entry(target, Path(opts.optimized_model_filepath).read_bytes())
        self.session = self._session()
        self.binding = self.session.io_binding()
        return [target] if target.is_file() else []

    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        if self.cuda:
            if self._device_input is None or self._device_input.shape() != list(x.shape):
                self._device_input = self._ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            else:
                self._device_input.update_inplace(x)
            self.binding.bind_ortvalue_input(self.input_name, self._device_input)
            self.binding.bind_output(self.output_name, "cuda", 0)
        else:
            self.binding.bind_cpu_input(self.input_name, x)
            self.binding.bind_output(self.output_name)
        self.session.run_with_iobinding(self.binding)
        return self.binding.copy_outputs_to_cpu()[0]

    def device(self) -> str:
        return "cuda:0" if self.cuda else "cpu"

    def describe(self) -> dict:
        return {
            **super().describe(),
            "providers": self.session.get_providers(),
            "model": str(self.loaded_from),
            "onnxruntime": self._ort.__version__,
        }

    def close(self) -> None:
        self.binding = None
        self.session = None


def installed_builds() -> list[str]:
    """The ONNX Runtime distributions installed (onnxruntime, onnxruntime-gpu): more than one
    share one `onnxruntime/` directory, and whichever was installed last overwrote the other."""
    return [f"{name} {version}" for name, version in installed("onnxruntime", "onnxruntime-gpu")]


def cuda_unavailable_reason() -> str | None:
    """Why ONNX Runtime's CUDA execution provider cannot be used here (with what to do), or
    None when it is offered: the CUDA build alone is installed and an NVIDIA driver is loaded."""
    import onnxruntime as ort

    builds = installed_builds()
    if len(builds) > 1:
        return (
            f"{' and '.join(builds)} are both installed into one directory, so either may be "
            f"the one that runs; keep one: {REINSTALL} (or pip install onnxruntime for CPU only)"
        )
    if not DRIVER_FILE.exists():
        return "no NVIDIA driver is loaded"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"this onnxruntime has no CUDA execution provider: {REINSTALL}"
    return None


def cuda_session(source: str | Path):
    """An InferenceSession on the CUDA execution provider, or BackendUnavailable saying why not.

    ONNX Runtime falls back to the CPU when the CUDA provider fails to initialise (cuDNN or
    cuBLAS for CUDA 12 missing, a driver too old): the session's own provider list, not the
    available list, tells whether it runs on the GPU.
    """
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):  # CUDA and cuDNN from the nvidia-* wheels, if installed
        ort.preload_dlls()
    providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    session = ort.InferenceSession(str(source), providers=providers)
    if "CUDAExecutionProvider" not in session.get_providers():
        raise BackendUnavailable(
            "onnxruntime: the CUDA execution provider did not initialise and the session fell "
            f"back to the CPU (usually cuDNN 9 or cuBLAS for CUDA 12 missing: {REINSTALL}; "
            "the log above has ONNX Runtime's own message; `p2phd doctor` checks the stack)"
        )
    return session
