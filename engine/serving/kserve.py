"""KServe v2 / Open Inference Protocol (`inference.GRPCInferenceService`) on the same RenderCore.

One model, named after the server's `model_name` (default "p2phd"), version "1". Tensors:
inputs "label" UINT8 [B, H, W], "instance" INT32 [B, H, W] (optional), "seed" INT64 [B]
(optional); output "image" UINT8 [B, H, W, 3]. An image-to-image model (pix2pix family) takes
input "input_image" UINT8 [B, H, W, C] instead. The B images of a request go through the
dynamic batcher one by one, so they also batch with other clients' requests.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import grpc
import numpy as np

from p2phd.common.errors import InputError
from p2phd.engine.core.style import Style
from p2phd.engine.serving.render_core import Item, RenderCore, clipped
from p2phd.engine.serving.wire import grpc_service_pb2 as pb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc
from p2phd.engine.serving.wire import model_config_pb2 as mc

VERSION = "1"
DATATYPES = {"UINT8": np.uint8, "INT32": np.int32, "INT64": np.int64}
CONTENTS_FIELD = {"UINT8": "uint_contents", "INT32": "int_contents", "INT64": "int64_contents"}
INPUTS = {"label": ("UINT8", 3), "instance": ("INT32", 3), "seed": ("INT64", 1)}
IMAGE_INPUT = "input_image"
IMAGE_INPUTS = {IMAGE_INPUT: ("UINT8", 4)}
OUTPUT = "image"
EXTENSIONS = ("model_configuration", "statistics")


class UnknownModel(InputError):
    """A KServe request named a model this server does not serve."""

    grpc_status = "NOT_FOUND"


def _tensor(
    request: pb.ModelInferRequest, index: int, max_elements: int, inputs: dict = INPUTS
) -> np.ndarray:
    """Input `index` of a request as an array, from raw_input_contents or typed contents."""
    t = request.inputs[index]
    if t.name not in inputs:
        raise InputError(f"input {clipped(t.name)}: unknown; this model takes {', '.join(inputs)}")
    datatype, ndim = inputs[t.name]
    if t.datatype != datatype:
        raise InputError(f"input {t.name!r}: datatype {t.datatype:.20}; expected {datatype}")
    shape = tuple(t.shape)
    if len(shape) != ndim or any(d <= 0 for d in shape):
        dims = {1: "[B]", 3: "[B, H, W]", 4: "[B, H, W, C]"}[ndim]
        raise InputError(f"input {t.name!r}: shape {list(shape)}; expected {dims} with dims > 0")
    count = math.prod(shape)
    if count > max_elements:
        raise InputError(
            f"input {t.name!r}: shape {list(shape)} has {count} elements, over the server's "
            f"limit of {max_elements} (max batch size x max image pixels)"
        )
    dtype = np.dtype(DATATYPES[datatype]).newbyteorder("<")
    if request.raw_input_contents:
        if t.contents.ListFields():
            raise InputError(
                f"input {t.name!r}: typed contents given together with raw_input_contents; "
                "send each input one way (Triton refuses this too)"
            )
        if len(request.raw_input_contents) != len(request.inputs):
            raise InputError(
                f"raw_input_contents has {len(request.raw_input_contents)} entries for "
                f"{len(request.inputs)} inputs"
            )
        data = request.raw_input_contents[index]
        if len(data) != count * dtype.itemsize:
            raise InputError(
                f"input {t.name!r}: {len(data)} bytes; shape {list(shape)} of {datatype} needs "
                f"{count * dtype.itemsize}"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    values = getattr(t.contents, CONTENTS_FIELD[datatype])
    if len(values) != count:
        raise InputError(
            f"input {t.name!r}: {len(values)} values; shape {list(shape)} needs {count}"
        )
    if datatype == "UINT8" and max(values, default=0) > 255:
        raise InputError(f"input {t.name!r}: values above 255 in UINT8 contents")
    return np.asarray(values, dtype=dtype).reshape(shape)


def items_from(request: pb.ModelInferRequest, core: RenderCore) -> list[Item]:
    """Decode and validate a ModelInferRequest into one Item per batch entry (I/O threads)."""
    max_batch = core.batching.max_batch_size
    image_model = core.manifest.image_input
    inputs = IMAGE_INPUTS if image_model else INPUTS
    arrays: dict[str, np.ndarray] = {}
    for i, t in enumerate(request.inputs):
        if t.name in arrays:
            raise InputError(f"input {clipped(t.name)}: given twice")
        limit = max_batch * core.max_image_pixels * (core.manifest.input_nc if image_model else 1)
        arrays[t.name] = _tensor(request, i, limit, inputs)
    for out in request.outputs:
        if out.name != OUTPUT:
            raise InputError(
                f"output {clipped(out.name)}: unknown; this model has output {OUTPUT!r}"
            )
    if image_model:
        images = arrays.get(IMAGE_INPUT)
        if images is None:
            raise InputError(f"input {IMAGE_INPUT!r} (UINT8 [B, H, W, C]) is required")
        if len(images) > max_batch:
            raise InputError(
                f"input {IMAGE_INPUT!r}: batch {len(images)} exceeds max_batch_size {max_batch}"
            )
        return [core.check_item(Item(None, None, Style(), image)) for image in images]
    label = arrays.get("label")
    if label is None:
        raise InputError("input 'label' (UINT8 [B, H, W]) is required")
    batch = label.shape[0]
    if batch > max_batch:
        raise InputError(f"input 'label': batch {batch} exceeds max_batch_size {max_batch}")
    instance = arrays.get("instance")
    if instance is not None and instance.shape != label.shape:
        raise InputError(
            f"input 'instance': shape {list(instance.shape)} differs from label's "
            f"{list(label.shape)}"
        )
    seed = arrays.get("seed")
    if seed is not None and seed.shape != (batch,):
        raise InputError(f"input 'seed': shape {list(seed.shape)}; expected [{batch}]")
    if seed is not None and seed.min() < 0:
        raise InputError("input 'seed': negative seed")
    return [
        core.check_item(
            Item(
                label[b],
                None if instance is None else instance[b],
                Style() if seed is None else Style(seed=int(seed[b])),
            )
        )
        for b in range(batch)
    ]


class KServeService(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    """The Open Inference Protocol's health, metadata, config and inference calls."""

    def __init__(self, core: RenderCore, server_version: str):
        self.core = core
        self.server_version = server_version

    def _check_model(self, name: str, version: str) -> None:
        if name != self.core.model_name or version not in ("", VERSION):
            raise UnknownModel(
                f"model {clipped(name)} version {clipped(version)} is not served; this server "
                f"serves {self.core.model_name!r} version {VERSION!r}"
            )

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.core.accepting)

    async def ModelReady(self, request, context):
        ready = (
            request.name == self.core.model_name
            and request.version in ("", VERSION)
            and self.core.accepting
        )
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(
            name="p2phd", version=self.server_version, extensions=list(EXTENSIONS)
        )

    async def ModelMetadata(self, request, context):
        async def handle():
            self._check_model(request.name, request.version)
            m = self.core.manifest
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=self.core.model_name,
                versions=[VERSION],
                platform="p2phd",
                inputs=[tensor(name=IMAGE_INPUT, datatype="UINT8", shape=[-1, -1, -1, m.input_nc])]
                if m.image_input
                else [
                    tensor(name="label", datatype="UINT8", shape=[-1, -1, -1]),
                    tensor(name="instance", datatype="INT32", shape=[-1, -1, -1]),
                    tensor(name="seed", datatype="INT64", shape=[-1]),
                ],
                outputs=[tensor(name=OUTPUT, datatype="UINT8", shape=[-1, -1, -1, 3])],
            )

        return await self.core.unary("ModelMetadata", context, handle)

    async def ModelConfig(self, request, context):
        async def handle():
            self._check_model(request.name, request.version)
            b = self.core.batching
            m = self.core.manifest
            backend = self.core.engine.describe().get("backend", "")
            return pb.ModelConfigResponse(
                config=mc.ModelConfig(
                    name=self.core.model_name,
                    platform="p2phd",
                    backend=f"p2phd-{backend}" if backend else "p2phd",
                    max_batch_size=b.max_batch_size,
                    input=[
                        mc.ModelInput(
                            name=IMAGE_INPUT, data_type=mc.TYPE_UINT8, dims=[-1, -1, m.input_nc]
                        )
                    ]
                    if m.image_input
                    else [
                        mc.ModelInput(name="label", data_type=mc.TYPE_UINT8, dims=[-1, -1]),
                        mc.ModelInput(
                            name="instance", data_type=mc.TYPE_INT32, dims=[-1, -1], optional=True
                        ),
                        mc.ModelInput(
                            name="seed", data_type=mc.TYPE_INT64, dims=[1], optional=True
                        ),
                    ],
                    output=[mc.ModelOutput(name=OUTPUT, data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])],
                    dynamic_batching=mc.ModelDynamicBatching(
                        preferred_batch_size=list(b.preferred_batch_sizes),
                        max_queue_delay_microseconds=b.max_queue_delay_us,
                    ),
                )
            )

        return await self.core.unary("ModelConfig", context, handle)

    async def ModelStatistics(self, request, context):
        async def handle():
            if request.name:
                self._check_model(request.name, request.version)
            t = self.core.metrics.totals

            def duration(d) -> pb.StatisticDuration:
                return pb.StatisticDuration(count=d.count, ns=d.ns)

            return pb.ModelStatisticsResponse(
                model_stats=[
                    pb.ModelStatistics(
                        name=self.core.model_name,
                        version=VERSION,
                        last_inference=t.last_inference_ms,
                        inference_count=t.inference_count,
                        execution_count=t.execution_count,
                        inference_stats=pb.InferStatistics(
                            success=duration(t.success),
                            fail=duration(t.fail),
                            queue=duration(t.queue),
                            compute_infer=duration(t.compute),
                        ),
                        batch_stats=[
                            pb.InferBatchStatistics(batch_size=size, compute_infer=duration(d))
                            for size, d in sorted(t.batches.items())
                        ],
                    )
                ]
            )

        return await self.core.unary("ModelStatistics", context, handle)

    async def _infer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        self._check_model(request.model_name, request.model_version)
        self.core.batcher.admit()  # a full queue refuses before any decoding
        items = await self.core.in_io(items_from, request, self.core)
        images = await asyncio.gather(*(self.core.render(it, context) for it in items))
        stacked = await self.core.in_io(np.stack, images)
        return pb.ModelInferResponse(
            model_name=self.core.model_name,
            model_version=VERSION,
            id=request.id,
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(
                    name=OUTPUT, datatype="UINT8", shape=list(stacked.shape)
                )
            ],
            raw_output_contents=[stacked.tobytes()],
        )

    async def ModelInfer(self, request, context):
        return await self.core.unary("ModelInfer", context, lambda: self._infer(request, context))

    async def ModelStreamInfer(
        self, request_iterator, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async def handle(req: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
            return pb.ModelStreamInferResponse(infer_response=await self._infer(req, context))

        def failed(req: pb.ModelInferRequest, code: grpc.StatusCode, message: str):
            return pb.ModelStreamInferResponse(
                error_message=f"{code.name}: {message}",
                infer_response=pb.ModelInferResponse(id=req.id, model_name=req.model_name),
            )

        async for resp in self.core.stream(
            "ModelStreamInfer", request_iterator, handle, failed, context
        ):
            yield resp
