"""A Renderer look-alike for the editor that renders through a running `p2phd serve`."""

from __future__ import annotations

import grpc
import numpy as np

from p2phd.engine.core.style import Style
from p2phd.engine.serving.client import RenderClient, RenderItem, error_for, image_of
from p2phd.engine.serving.wire import renderer_pb2 as pb


class RemoteRenderer:
    """Sends one label/instance map pair and its style (seed, per-instance clusters) per call."""

    def __init__(self, target: str, timeout: float = 30.0):
        self.client = RenderClient(target, timeout=timeout)
        self.target = target
        info = self.client.model_info()  # fails early, with the reason, when nothing listens
        self.label_nc = info.label_nc

    def render(self, labels: np.ndarray, instances: np.ndarray | None, style: Style) -> np.ndarray:
        """uint8 [H, W, 3] for one [H, W] map pair; server errors arrive as p2phd errors."""
        request = RenderItem(labels, instances).request()
        explicit = pb.ExplicitStyle(
            seed=style.seed,
            class_cluster=dict(style.by_class),
            instance_cluster=dict(style.by_instance),
        )
        request.style.CopyFrom(pb.Style(explicit=explicit))
        try:
            response = self.client.stub.Render(request, timeout=self.client.timeout)
        except grpc.RpcError as e:
            raise error_for(e.code().name, e.details() or "", self.target) from None
        return image_of(response)

    def describe(self) -> dict:
        return {"backend": "server", "server": self.target}

    def close(self) -> None:
        self.client.close()
