"""PyTorch eager fp32: the reference every other engine is measured against.

The network is rebuilt from `manifest.architecture` by its model family's `build_generator` and
its weights are read from generator.onnx's initializers by name, so the reference computes what
the package holds, not what some checkpoint on disk might hold. Imported only when chosen: the
engine needs no PyTorch otherwise.
"""

from __future__ import annotations

import numpy as np

from p2phd.common.errors import PackageError
from p2phd.engine.backends.base import Backend


class TorchBackend(Backend):
    name = "torch"
    precisions = ("fp32",)
    # The reference: chosen by name only, never by "auto" (its modules are the train extra's).
    requires = {"torch": "pip install -e '.[train]'", "onnx": "pip install -e '.[train]'"}

    def load_impl(self) -> None:
        import torch

        self._torch = torch
        self.generator = _build(self.package.manifest.architecture).eval()
        self.generator.load_state_dict(self._onnx_weights(self.generator))

    def _onnx_weights(self, generator) -> dict:
        """The generator's state_dict, read from the ONNX initializers named like its keys.
        Buffers the graph does not use (BatchNorm counters; running statistics of per-image
        BatchNorm) keep the module's own values."""
        import onnx
        from onnx import numpy_helper

        path = self.package.generator_path
        graph = onnx.load(str(path)).graph
        found = {init.name: init for init in graph.initializer}
        expected = generator.state_dict()
        params = {name for name, _ in generator.named_parameters()}
        for key in [k for k in expected if k not in found and k not in params]:
            expected.pop(key)
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
            weights[key] = self._torch.from_numpy(value.astype(tensor.numpy().dtype, copy=True))
        return {**generator.state_dict(), **weights}

    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            out = self.generator(self._torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return out.numpy()

    def describe(self) -> dict:
        return {**super().describe(), "torch": self._torch.__version__}


def _build(architecture: dict):
    """The torch network `architecture` (a manifest's) describes, built by its model family."""
    from p2phd.train import families

    config = families.config_from_json(architecture)
    return families.of(config).build_generator(config)
