"""PyTorch eager fp32: the reference every other engine is measured against.

The network is rebuilt from `manifest.architecture` by the training code's `build_generator` and
its weights are read from generator.onnx's initializers by name, so the reference computes what
the package holds, not what some checkpoint on disk might hold. Imported only when chosen: the
engine needs no PyTorch otherwise.
"""

from __future__ import annotations

import numpy as np

from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.errors import BackendUnavailable, PackageError
from p2phd.engine.package import ModelPackage


class TorchBackend(Backend):
    name = "torch"
    precisions = ("fp32",)

    def __init__(self, package: ModelPackage, precision: str, options: EngineOptions | None = None):
        super().__init__(package, precision, options)
        reason = self.availability()
        if reason:
            raise BackendUnavailable(reason)
        import torch

        from p2phd.train.model_config import ModelConfig
        from p2phd.train.networks import build_generator

        self._torch = torch
        config = ModelConfig.from_json(package.manifest.architecture)
        self.generator = build_generator(config).eval()
        self.generator.load_state_dict(self._onnx_weights(self.generator.state_dict()))

    @classmethod
    def availability(cls) -> str | None:
        try:
            import onnx  # noqa: F401
            import torch  # noqa: F401
        except ImportError as e:
            return f"the torch reference backend needs torch and onnx ({e.name} is not installed)"
        return None

    def _onnx_weights(self, expected: dict) -> dict:
        """The generator's state_dict, read from the ONNX initializers named like its keys."""
        import onnx
        from onnx import numpy_helper

        path = self.package.generator_path
        graph = onnx.load(str(path)).graph
        found = {init.name: init for init in graph.initializer}
        missing = [k for k in expected if k not in found]
        if missing:
            raise PackageError(
                f"{path}: no initializer for {len(missing)} generator parameter(s), e.g. "
                f"{', '.join(missing[:3])}; the ONNX was not exported with state_dict names"
            )
        weights = {}
        for key, tensor in expected.items():
            value = numpy_helper.to_array(found[key])
            if value.shape != tuple(tensor.shape):
                raise PackageError(
                    f"{path}: initializer {key} has shape {value.shape}, the architecture in "
                    f"the manifest expects {tuple(tensor.shape)}"
                )
            weights[key] = self._torch.from_numpy(value.astype(np.float32, copy=True))
        return weights

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            out = self.generator(self._torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return out.numpy()

    def describe(self) -> dict:
        return {**super().describe(), "torch": self._torch.__version__}
