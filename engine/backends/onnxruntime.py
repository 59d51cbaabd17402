"""ONNX Runtime: the CPU execution provider (graph-optimized model cached by `build`), or the CUDA
execution provider when onnxruntime-gpu and a GPU are present; inputs and outputs go through IO
binding so the output buffer is not re-allocated per call on the device.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from p2phd.engine.atomic import atomic_path
from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.errors import BackendUnavailable, PackageError
from p2phd.engine.package import ModelPackage

log = logging.getLogger(__name__)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "fp16")

    def __init__(self, package: ModelPackage, precision: str, options: EngineOptions | None = None):
        super().__init__(package, precision, options)
        reason = self.availability()
        if reason:
            raise BackendUnavailable(reason)
        import onnxruntime as ort

        self._ort = ort
        self.cuda = _cuda_provider()
        reason = self.reduced_unsupported(precision) if precision == "fp16" else None
        if reason:
            raise BackendUnavailable(f"{reason}; use precision fp32")
        self.source = package.generator_path
        if precision == "fp16":
            self.source = package.variant_path("fp16")
            if self.source is None:
                raise PackageError(f"{package.path}: has no fp16 generator variant; re-export it")
        self.session = self._session()
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.binding = self.session.io_binding()
        self._device_input = None

    @classmethod
    def availability(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    @classmethod
    def reduced_unsupported(cls, precision: str) -> str | None:
        if precision == "fp16" and not _cuda_provider():
            return (
                "onnxruntime fp16 runs on the CUDA execution provider only "
                "(needs onnxruntime-gpu and an NVIDIA GPU)"
            )
        return super().reduced_unsupported(precision)

    @property
    def optimized_path(self) -> Path:
        """The CPU graph-optimized model, keyed by the generator's sha256."""
        digest = self.package.manifest.files.get(self.source.name, "unhashed")[:16]
        return self.engine_dir() / f"{self.source.stem}.{digest}.cpu-opt.onnx"

    def _options(self, level):
        opts = self._ort.SessionOptions()
        opts.graph_optimization_level = level
        return opts

    def _session(self):
        ort = self._ort
        self.loaded_from = self.source
        if self.cuda:
            providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
            return ort.InferenceSession(str(self.source), providers=providers)
        # The cached model holds the portable (extended) rewrites; layout ones are redone here.
        source = self.optimized_path if self.optimized_path.is_file() else self.source
        self.loaded_from = source
        opts = self._options(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        return ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])

    def build(self) -> list[Path]:
        if self.cuda:
            return []
        target = self.optimized_path
        opts = self._options(self._ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
        with atomic_path(target) as tmp:
            opts.optimized_model_filepath = str(tmp)
            self._ort.InferenceSession(str(self.source), opts, providers=["CPUExecutionProvider"])
        self.session = self._session()
        self.binding = self.session.io_binding()
        return [target]

    def infer(self, x: np.ndarray) -> np.ndarray:
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


def _cuda_provider() -> bool:
    """True with onnxruntime-gpu installed and an NVIDIA driver loaded."""
    import onnxruntime as ort

    driver = Path("/proc/driver/nvidia/version").exists()
    return driver and "CUDAExecutionProvider" in ort.get_available_providers()
