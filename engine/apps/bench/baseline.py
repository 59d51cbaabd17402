"""The original pix2pixHD inference path, the baseline every engine row is compared with.

PyTorch eager fp32, one image at a time: the one-hot, instance edges and sampled instance
features are built in torch (`p2phd.train.pix2pixhd.input_encoding`, as the original's
`encode_input`), the network is the package's own generator rebuilt by the torch backend, and
the output goes to uint8 as the original's `tensor2im` does ((x + 1) / 2 * 255, truncated).
Imported only when asked for.
"""

from __future__ import annotations

import numpy as np

from p2phd.engine.backends.torch import TorchBackend
from p2phd.engine.core.package import ModelPackage


class OriginalPipeline:
    """preprocess -> infer -> postprocess of the original pix2pixHD test script, on one package."""

    name = "pix2pixHD"
    precision = "fp32"

    def __init__(self, package: ModelPackage, seed: int = 0):
        import torch

        from p2phd.train.pix2pixhd.config import ModelConfig

        self._torch = torch
        self.backend = TorchBackend(package, "fp32")
        self.config = ModelConfig.from_json(package.manifest.architecture)
        self.clusters = package.feature_clusters()
        self.generator = torch.Generator().manual_seed(seed)

    def preprocess(self, labels: np.ndarray, instances: np.ndarray | None):
        """uint8 [B,H,W] labels and int32 instance ids -> the generator's input tensor."""
        from p2phd.train.pix2pixhd.input_encoding import encode_input, sample_features

        torch = self._torch
        label = torch.from_numpy(np.ascontiguousarray(labels)).unsqueeze(1)
        instance = None
        if instances is not None:
            instance = torch.from_numpy(np.ascontiguousarray(instances, np.int32)).unsqueeze(1)
        elif self.config.instance or self.config.feat_num:
            instance = label.int()
        features = None
        if self.config.feat_num:
            features = sample_features(
                instance, self.clusters, self.config.feat_num, self.generator
            )
        return encode_input(self.config, label, instance, features)

    def infer(self, x):
        with self._torch.inference_mode():
            return self.backend.generator(x)

    @staticmethod
    def postprocess(out) -> np.ndarray:
        """The original tensor2im: [B,3,H,W] in [-1, 1] -> uint8 [B,H,W,3], truncating."""
        image = (np.transpose(out.float().numpy(), (0, 2, 3, 1)) + 1) / 2.0 * 255.0
        return np.clip(image, 0, 255).astype(np.uint8)

    def reference(self, x: np.ndarray) -> np.ndarray:
        """The fp32 output for an engine's dense input (the quality reference)."""
        return self.backend.infer(x)

    def describe(self) -> dict:
        return {
            "backend": "torch-eager",
            "precision": "fp32",
            "device": "cpu",
            "path": "original pix2pixHD: torch one-hot + edges, eager fp32 generator, tensor2im",
            "torch": self._torch.__version__,
            "torch_threads": self._torch.get_num_threads(),
        }

    def close(self) -> None:
        self.backend.close()
