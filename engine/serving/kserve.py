"""KServe v2 / Open Inference Protocol (`inference.GRPCInferenceService`) on the same RenderCore.

One model, named after the server's `model_name` (default "p2phd"), version "1". Its tensors are
declared once, here (`inputs_of`, `OUTPUT`), and read by this service's checks, metadata and
config, by Triton's config.pbtxt writer and by the model Triton runs. The B images of a request
go through the dynamic batcher one by one, so they also batch with other clients' requests.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import grpc
import numpy as np

from p2phd.common.errors import InputError
from p2phd.engine.core.package import Manifest
from p2phd.engine.core.style import Style
from p2phd.engine.serving.render_core import Item, RenderCore, clipped
from p2phd.engine.serving.wire import grpc_service_pb2 as pb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc
from p2phd.engine.serving.wire import model_config_pb2 as mc

VERSION = "1"
DATATYPES = {"UINT8": np.uint8, "INT32": np.int32, "INT64": np.int64}
DATATYPE_OF = {np.dtype(v): k for k, v in DATATYPES.items()}
CONTENTS_FIELD = {"UINT8": "uint_contents", "INT32": "int_contents", "INT64": "int64_contents"}
EXTENSIONS = ("model_configuration", "statistics")
AXES = ("H", "W", "C")


@dataclass(frozen=True)
class Tensor:
    """One tensor of the model: its name, KServe datatype and dims after the batch dim (-1: any
    size; none: one value per batch entry); an optional input may be left out."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False

    @property
    def shape(self) -> list[int]:
        """The KServe shape, batch first (metadata)."""
        return [-1, *self.dims]

    @property
    def config_dims(self) -> list[int]:
        """The dims in a ModelConfig, after its batch dim (a value per batch entry is [1])."""
        return list(self.dims) or [1]

    @property
    def layout(self) -> str:
        return "[" + ", ".join(("B", *AXES[: len(self.dims)])) + "]"


LABEL = Tensor("label", "UINT8", (-1, -1))
INSTANCE = Tensor("instance", "INT32", (-1, -1), optional=True)
SEED = Tensor("seed", "INT64", (), optional=True)
IMAGE_INPUT = "input_image"
OUTPUT = Tensor("image", "UINT8", (-1, -1, 3))


def inputs_of(manifest: Manifest) -> tuple[Tensor, ...]:
    """The model's inputs: label, instance and seed, or an image-to-image model's input image."""
    if manifest.image_input:
        return (Tensor(IMAGE_INPUT, "UINT8", (-1, -1, manifest.input_nc)),)
    return (LABEL, INSTANCE, SEED)


class UnknownModel(InputError):
    """A KServe request named a model this server does not serve."""

    grpc_status = "NOT_FOUND"


def _max_elements(core: RenderCore) -> int:
    """The most values one input may hold: max batch size x max image pixels (x channels)."""
    m = core.manifest
    channels = m.input_nc if m.image_input else 1
    return core.batching.max_batch_size * core.max_image_pixels * channels


def _input(name: str, core: RenderCore) -> Tensor:
    inputs = inputs_of(core.manifest)
    for tensor in inputs:
        if tensor.name == name:
            return tensor
    names = ", ".join(t.name for t in inputs)
    raise InputError(f"input {clipped(name)}: unknown; this model takes {names}")


def _checked(name: str, datatype: str, shape: tuple[int, ...], core: RenderCore) -> int:
    """Refuse an input that is unknown, of another datatype or shape, or over the element limit;
    returns how many values it holds."""
    tensor = _input(name, core)
    if datatype != tensor.datatype:
        raise InputError(f"input {name!r}: datatype {datatype:.20}; expected {tensor.datatype}")
    if len(shape) != len(tensor.shape) or any(d <= 0 for d in shape):
        raise InputError(
            f"input {name!r}: shape {list(shape)}; expected {tensor.layout} with dims > 0"
        )
    count = math.prod(shape)
    if count > (limit := _max_elements(core)):
        raise InputError(
            f"input {name!r}: shape {list(shape)} has {count} elements, over the server's "
            f"limit of {limit} (max batch size x max image pixels)"
        )
    return count


def _decoded(request: pb.ModelInferRequest, index: int, count: int) -> np.ndarray:
    """Input `index` of a checked request as an array, from raw_input_contents or typed contents."""
    t = request.inputs[index]
    shape = tuple(t.shape)
    dtype = np.dtype(DATATYPES[t.datatype]).newbyteorder("<")
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
                f"input {t.name!r}: {len(data)} bytes; shape {list(shape)} of {t.datatype} needs "
                f"{count * dtype.itemsize}"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    values = getattr(t.contents, CONTENTS_FIELD[t.datatype])
    if len(values) != count:
        raise InputError(
            f"input {t.name!r}: {len(values)} values; shape {list(shape)} needs {count}"
        )
    if t.datatype == "UINT8" and max(values, default=0) > 255:
        raise InputError(f"input {t.name!r}: values above 255 in UINT8 contents")
    return np.asarray(values, dtype=dtype).reshape(shape)


def arrays_from(request: pb.ModelInferRequest, core: RenderCore) -> dict[str, np.ndarray]:
    """A ModelInferRequest's inputs as arrays by name; each is checked against the model's
    tensors before it is decoded (I/O threads)."""
    arrays: dict[str, np.ndarray] = {}
    for i, t in enumerate(request.inputs):
        if t.name in arrays:
            raise InputError(f"input {clipped(t.name)}: given twice")
        arrays[t.name] = _decoded(request, i, _checked(t.name, t.datatype, tuple(t.shape), core))
    for out in request.outputs:
        if out.name != OUTPUT.name:
            raise InputError(
                f"output {clipped(out.name)}: unknown; this model has output {OUTPUT.name!r}"
            )
    return arrays


def items_from(arrays: Mapping[str, np.ndarray], core: RenderCore) -> list[Item]:
    """Check a request's input arrays (by name, batch first, as KServe shapes them) and split
    them into one validated Item per batch entry (I/O threads)."""
    for name, array in arrays.items():
        _checked(name, DATATYPE_OF.get(array.dtype, str(array.dtype)), array.shape, core)
    max_batch = core.batching.max_batch_size
    if core.manifest.image_input:
        images = arrays.get(IMAGE_INPUT)
        if images is None:
            raise InputError(f"input {IMAGE_INPUT!r} (UINT8 [B, H, W, C]) is required")
        if len(images) > max_batch:
            raise InputError(
                f"input {IMAGE_INPUT!r}: batch {len(images)} exceeds max_batch_size {max_batch}"
            )
        return [core.check_item(Item(None, None, Style(), image)) for image in images]
    label = arrays.get(LABEL.name)
    if label is None:
        raise InputError(f"input 'label' (UINT8 {LABEL.layout}) is required")
    batch = label.shape[0]
    if batch > max_batch:
        raise InputError(f"input 'label': batch {batch} exceeds max_batch_size {max_batch}")
    instance = arrays.get(INSTANCE.name)
    if instance is not None and instance.shape != label.shape:
        raise InputError(
            f"input 'instance': shape {list(instance.shape)} differs from label's "
            f"{list(label.shape)}"
        )
    seed = arrays.get(SEED.name)
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
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=self.core.model_name,
                versions=[VERSION],
                platform="p2phd",
                inputs=[
                    tensor(name=t.name, datatype=t.datatype, shape=t.shape)
                    for t in inputs_of(self.core.manifest)
                ],
                outputs=[tensor(name=OUTPUT.name, datatype=OUTPUT.datatype, shape=OUTPUT.shape)],
            )

        return await self.core.unary("ModelMetadata", context, handle)

    async def ModelConfig(self, request, context):
        async def handle():
            self._check_model(request.name, request.version)
            b = self.core.batching
            backend = self.core.renderer.describe().get("backend", "")
            return pb.ModelConfigResponse(
                config=mc.ModelConfig(
                    name=self.core.model_name,
                    platform="p2phd",
                    backend=f"p2phd-{backend}" if backend else "p2phd",
                    max_batch_size=b.max_batch_size,
                    input=[
                        mc.ModelInput(
                            name=t.name,
                            data_type=mc.DataType.Value(f"TYPE_{t.datatype}"),
                            dims=t.config_dims,
                            optional=t.optional,
                        )
                        for t in inputs_of(self.core.manifest)
                    ],
                    output=[
                        mc.ModelOutput(
                            name=OUTPUT.name,
                            data_type=mc.DataType.Value(f"TYPE_{OUTPUT.datatype}"),
                            dims=OUTPUT.config_dims,
                        )
                    ],
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
        items = await self.core.in_io(
            lambda: items_from(arrays_from(request, self.core), self.core)
        )
        images = await asyncio.gather(*(self.core.render(it, context) for it in items))
        stacked = await self.core.in_io(np.stack, images)
        return pb.ModelInferResponse(
            model_name=self.core.model_name,
            model_version=VERSION,
            id=request.id,
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(
                    name=OUTPUT.name, datatype=OUTPUT.datatype, shape=list(stacked.shape)
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
