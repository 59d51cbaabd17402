"""The model Triton's Python backend runs: `p2phd serve`'s request checks and Renderer behind
Triton's dynamic batcher.

Triton hands `execute` the requests its batcher gathered (up to max_batch_size images). Each
one's tensors are checked exactly as the KServe v2 service checks a ModelInferRequest's
(`kserve.items_from`); the images of all of them that share a size render in one engine call per
max_batch_size, with `RenderCore`'s isolation (one bad item fails only its request, an
out-of-memory batch is retried in halves). A request that fails gets its own error response,
INVALID_ARG with the reason for bad input; `execute` never raises, so no input stops the model.

Tensors cross through DLPack, not `as_numpy()`: the Python backend stub of Triton 2.51 reads
numpy 2 arrays through numpy 1's struct layout (as_numpy() returns zeros there).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from p2phd.engine.serving import kserve
from p2phd.engine.serving.metrics import ServerMetrics
from p2phd.engine.serving.render_core import Item, RenderCore, status_of
from p2phd.engine.serving.server import default_renderer
from p2phd.engine.serving.triton.repository import PACKAGE, PACKAGE_KEY, SETTINGS_KEY, config_from

log = logging.getLogger(__name__)

# gRPC status of a P2PHDError -> the TritonError code Triton turns back into that status.
TRITON_CODES = {
    "INVALID_ARGUMENT": "INVALID_ARG",
    "NOT_FOUND": "NOT_FOUND",
    "FAILED_PRECONDITION": "UNSUPPORTED",
    "UNAVAILABLE": "UNAVAILABLE",
    "RESOURCE_EXHAUSTED": "UNAVAILABLE",
    "DEADLINE_EXCEEDED": "UNAVAILABLE",
    "CANCELLED": "CANCELLED",
}


def error_response(exc: BaseException) -> pb_utils.InferenceResponse:
    """The response failing one request: its status as a TritonError, with the reason."""
    code, message = status_of(exc)
    if code.name == "INTERNAL":
        log.error("request failed: %s", message, exc_info=exc)
    triton_code = getattr(pb_utils.TritonError, TRITON_CODES.get(code.name, "INTERNAL"))
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, triton_code))


CAPSULE_NOISE = "PyCapsule_GetPointer called with incorrect name"


def _without_consumed_capsule_noise(hook):
    """`hook`, but silent on the stub's capsule destructor failing on a capsule numpy consumed
    (renamed "used_dltensor", as DLPack says): one harmless stderr line per input otherwise."""

    def filtered(unraisable) -> None:
        e = unraisable.exc_value
        if not (
            isinstance(e, ValueError) and str(e) == CAPSULE_NOISE and unraisable.object is None
        ):
            hook(unraisable)

    return filtered


def arrays_of(request, inputs: tuple[kserve.Tensor, ...]) -> dict[str, np.ndarray]:
    """A Triton request's input tensors by name, shaped as KServe's (a value per batch entry,
    [B, 1] in Triton, back to [B]), for `kserve.items_from`."""
    arrays = {}
    for t in inputs:
        tensor = pb_utils.get_input_tensor_by_name(request, t.name)
        if tensor is not None:
            array = np.from_dlpack(tensor)
            arrays[t.name] = array if t.dims else array.reshape(-1)
    return arrays


def pin_device(args: dict) -> None:
    """KIND_GPU: make this instance's GPU the only one its process sees, so that every backend's
    device 0 is the GPU Triton gave it (each instance is its own stub process). This holds only
    if nothing in the stub initialised CUDA before `initialize`; not yet tried on a GPU."""
    if args.get("model_instance_kind") != "GPU":
        return
    device = int(args["model_instance_device_id"])
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(device + 1)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[device]


class TritonPythonModel:
    """One model instance: a Renderer on this instance's device, and the server's checks."""

    def initialize(self, args: dict) -> None:
        sys.unraisablehook = _without_consumed_capsule_noise(sys.unraisablehook)
        pin_device(args)
        model_config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in model_config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        config = config_from(
            json.loads(params.get(SETTINGS_KEY, "{}")),
            version_dir / params.get(PACKAGE_KEY, PACKAGE),
            args["model_name"],
        )
        config.max_batch_size = int(model_config["max_batch_size"])
        self.core = RenderCore(
            default_renderer(config),
            config.batcher_config(),
            ServerMetrics(),
            max_image_pixels=config.max_image_pixels,
            model_name=config.model_name,
        )
        self.inputs = kserve.inputs_of(self.core.manifest)
        log.info("p2phd model %s: %s", config.model_name, self.core.renderer.describe())

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        decoded: list[tuple[int, list[Item]]] = []
        for i, request in enumerate(requests):
            try:
                items = kserve.items_from(arrays_of(request, self.inputs), self.core)
            except Exception as e:  # the request's own fault (or ours): its response only
                responses[i] = error_response(e)
                continue
            decoded.append((i, items))
        images = self._render([item for _, items in decoded for item in items])
        start = 0
        for i, items in decoded:
            mine = images[start : start + len(items)]
            start += len(items)
            failed = next((r for r in mine if isinstance(r, BaseException)), None)
            if failed is not None:
                responses[i] = error_response(failed)
            else:
                capsule = np.stack(mine).__dlpack__()  # unversioned: what the stub reads
                image = pb_utils.Tensor.from_dlpack(kserve.OUTPUT.name, capsule)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[image])
        return responses

    def _render(self, items: list[Item]) -> list:
        """Each item's image or exception; items that share a key render together, at most
        max_batch_size per engine call."""
        results: list = [None] * len(items)
        groups: dict[tuple, list[int]] = {}
        for j, item in enumerate(items):
            groups.setdefault(item.key, []).append(j)
        size = self.core.batching.max_batch_size
        for indices in groups.values():
            for k in range(0, len(indices), size):
                chunk = indices[k : k + size]
                try:
                    out = self.core.run_batch([items[j] for j in chunk])
                except Exception as e:
                    out = [e] * len(chunk)
                for j, r in zip(chunk, out, strict=True):
                    results[j] = r
        return results

    def finalize(self) -> None:
        self.core.renderer.close()
