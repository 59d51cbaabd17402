"""OpenVINO on the CPU: bf16 where the CPU computes it natively (AMX, AVX512-BF16), else fp32.

One compiled model per input size (height and width static: static spatial shapes let the CPU
plugin pick its fastest convolutions), each with one reused infer request; batch 1, the latency
case, gets a fully static model (about 25% faster here than a dynamic batch), larger batches
share one with a dynamic batch dimension, so a server's varying batch sizes compile nothing new.
The performance hint is LATENCY: each call is one synchronous request (the server batches
upstream), which THROUGHPUT's several CPU streams would each run with fewer cores.
Compiled blobs are cached in MODEL_DIR/engines/openvino/, so a restart compiles nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.cpu_features import bf16_instructions
from p2phd.engine.errors import BackendUnavailable
from p2phd.engine.package import ModelPackage

log = logging.getLogger(__name__)

MAX_COMPILED_SHAPES = 8


class OpenVINOBackend(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16")

    def __init__(
        self,
        package: ModelPackage,
        precision: str,
        options: EngineOptions | None = None,
        performance_hint: str = "LATENCY",
    ):
        super().__init__(package, precision, options)
        reason = self.availability()
        if reason:
            raise BackendUnavailable(reason)
        import openvino as ov

        reason = self.reduced_unsupported(precision) if precision == "bf16" else None
        if reason:
            raise BackendUnavailable(f"{reason}; use precision fp32")
        self._ov = ov
        self.core = ov.Core()
        self.model = self.core.read_model(str(package.generator_path))
        self.input_name = self.model.inputs[0].get_any_name()
        self.performance_hint = performance_hint
        self.config = {
            "CACHE_DIR": str(self.engine_dir()),
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": performance_hint,
        }
        self._compiled: dict[tuple[int, int], tuple[object, object]] = {}

    @classmethod
    def availability(cls) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "openvino is not installed (pip install openvino)"
        return None

    @classmethod
    def reduced_unsupported(cls, precision: str) -> str | None:
        if precision == "bf16" and not bf16_instructions():
            return "this CPU has neither AMX nor AVX512-BF16 (flags amx_bf16, avx512_bf16)"
        return super().reduced_unsupported(precision)

    def _request(self, batch: int, height: int, width: int):
        """The infer request for this shape, compiling (or loading from the cache) on first use."""
        key = (1 if batch == 1 else -1, height, width)
        if key not in self._compiled:
            if len(self._compiled) >= MAX_COMPILED_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
            model = self.model.clone()
            channels = self.package.manifest.input_channels
            model.reshape({self.input_name: self._ov.PartialShape([key[0], channels, *key[1:]])})
            compiled = self.core.compile_model(model, "CPU", self.config)
            log.debug("openvino: compiled %s at %s", key, self.precision)
            self._compiled[key] = (compiled, compiled.create_infer_request())
        return self._compiled[key][1]

    def infer(self, x: np.ndarray) -> np.ndarray:
        batch, _, height, width = x.shape
        request = self._request(batch, height, width)
        request.infer({0: np.ascontiguousarray(x, np.float32)})
        return request.get_output_tensor(0).data.copy()

    def build(self) -> list[Path]:
        lo, _, hi = self.options.batch
        for h, w in self.options.sizes:
            for batch in {lo, hi}:
                self._request(batch, h, w)
        return sorted(p for p in self.engine_dir().iterdir() if p.suffix == ".blob")

    def describe(self) -> dict:
        isa = bf16_instructions()
        return {
            **super().describe(),
            "performance_hint": self.performance_hint,
            "cpu_bf16": ", ".join(isa) if isa else "none",
            "openvino": self._ov.__version__,
        }

    def close(self) -> None:
        self._compiled.clear()
