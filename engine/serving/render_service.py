"""The `p2phd.v1.Renderer` gRPC service: Render, RenderStream and GetModelInfo.

Maps come as PNG bytes or raw arrays, style as a seed, explicit clusters/vectors or a reference
photo (an image-to-image model's input image as PNG/JPEG bytes or a raw array); the image goes
back as PNG or raw uint8. Wire messages become validated `Item`s here, in
the I/O threads; everything after that is `RenderCore`'s.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable

import grpc
import numpy as np
from PIL import Image

from p2phd.common.decode import decode_instance, decode_label
from p2phd.common.errors import InputError
from p2phd.common.image_input import decode_image
from p2phd.common.png import encode_png
from p2phd.engine.core.style import Style, check_entries
from p2phd.engine.serving.render_core import Item, RenderCore, clipped
from p2phd.engine.serving.wire import renderer_pb2 as pb
from p2phd.engine.serving.wire import renderer_pb2_grpc

log = logging.getLogger(__name__)

DTYPES = {pb.DTYPE_UINT8: np.uint8, pb.DTYPE_UINT16: np.uint16, pb.DTYPE_INT32: np.int32}


CheckSize = Callable[[int, int, str], None]


def raw_array(
    msg: pb.RawArray, what: str, check_size: CheckSize, channels: int | None = None
) -> np.ndarray:
    """A RawArray message as a numpy array, with its declared shape checked against its bytes:
    [H, W], or [H, W, channels] when `channels` is given. `check_size(h, w, what)`
    (`RenderCore.check_size`) refuses, from the declared shape alone, a size over the limits."""
    dtype = DTYPES.get(msg.dtype)
    if dtype is None:
        names = ", ".join(pb.DType.Name(k) for k in DTYPES)
        given = pb.DType.Name(msg.dtype) if msg.dtype in pb.DType.values() else msg.dtype
        raise InputError(f"{what}: dtype {given!r} is not one of {names}")
    shape = tuple(msg.shape)
    if channels is not None:
        if len(shape) != 3 or min(shape) <= 0 or shape[2] != channels:
            raise InputError(
                f"{what}: shape {list(shape)}; expected [H, W, {channels}] with H, W > 0"
            )
        if dtype is not np.uint8:
            raise InputError(f"{what}: dtype {pb.DType.Name(msg.dtype)}; expected DTYPE_UINT8")
    elif len(shape) != 2 or min(shape) <= 0:
        raise InputError(f"{what}: shape {list(shape)}; expected [H, W] with H, W > 0")
    check_size(shape[0], shape[1], what)
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    data = msg.data  # a copy per access
    if len(data) != expected:
        raise InputError(
            f"{what}: {len(data)} bytes of data; shape {list(shape)} of "
            f"{np.dtype(dtype).name} needs {expected}"
        )
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)


def _label(msg: pb.Map, max_pixels: int, check_size: CheckSize) -> np.ndarray:
    kind = msg.WhichOneof("source")
    if kind == "png":
        return decode_label(msg.png, name="<request>", max_pixels=max_pixels)
    if kind == "raw":
        a = raw_array(msg.raw, "label map", check_size)
        if a.dtype != np.uint8:
            raise InputError(f"label map: dtype {a.dtype}; expected uint8 class ids")
        return a
    raise InputError("label map: missing; set label.png or label.raw")


def _instance(msg: pb.Map, max_pixels: int, check_size: CheckSize) -> np.ndarray | None:
    kind = msg.WhichOneof("source")
    if kind == "png":
        return decode_instance(msg.png, name="<request>", max_pixels=max_pixels)
    if kind == "raw":
        return raw_array(msg.raw, "instance map", check_size).astype(np.int32)
    return None


def _reference(png: bytes, max_pixels: int) -> np.ndarray:
    """Decode a reference photo PNG into uint8 RGB, with the same pixel limit as the maps."""
    try:
        img = Image.open(io.BytesIO(png), formats=["PNG"])
        w, h = img.size
        if w * h > max_pixels:
            raise InputError(f"style reference: {w}x{h} pixels exceeds the limit of {max_pixels}")
        return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"style reference: not a readable PNG ({e})") from e


def _input_image(
    msg: pb.InputImage, channels: int, max_pixels: int, check_size: CheckSize
) -> np.ndarray:
    kind = msg.WhichOneof("source")
    if kind == "encoded":
        return decode_image(msg.encoded, channels, name="<request>", max_pixels=max_pixels)
    if kind == "raw":
        return raw_array(msg.raw, "input image", check_size, channels)
    raise InputError("input image: missing; set image.encoded or image.raw")


def style_from(msg: pb.Style, max_pixels: int, feat_num: int) -> Style:
    """The request's Style; map sizes and vector lengths are checked on the message, before any
    of it is copied (a request of millions of entries costs nothing beyond its bytes)."""
    kind = msg.WhichOneof("kind")
    if kind == "seed":
        return Style(seed=msg.seed)
    if kind == "explicit":
        e = msg.explicit
        check_entries("class_cluster", len(e.class_cluster))
        check_entries("instance_cluster", len(e.instance_cluster))
        check_entries("instance_features", len(e.instance_features))
        for inst, vec in e.instance_features.items():
            if len(vec.values) != feat_num:
                raise InputError(
                    f"style: instance_features for instance {inst} has {len(vec.values)} "
                    f"values; this model takes {feat_num}"
                )
        return Style(
            seed=e.seed,
            by_class=dict(e.class_cluster),
            by_instance=dict(e.instance_cluster),
            vectors={k: list(v.values) for k, v in e.instance_features.items()},
        )
    if kind == "reference_png":
        return Style(reference=_reference(msg.reference_png, max_pixels))
    return Style()


def item_from(request: pb.RenderRequest, core: RenderCore) -> Item:
    """Decode and validate a RenderRequest (runs in the I/O threads)."""
    limit, check_size = core.max_image_pixels, core.check_size
    if core.manifest.image_input:
        if request.HasField("label"):
            raise InputError("label map: this image-to-image model takes `image`, not `label`")
        image = _input_image(request.image, core.manifest.input_nc, limit, check_size)
        return core.check_item(Item(None, None, Style(), image))
    if request.HasField("image"):
        raise InputError("input image: this model takes label maps (`label`), not `image`")
    label = _label(request.label, limit, check_size)
    instance = _instance(request.instance, limit, check_size)
    if instance is not None and instance.shape != label.shape:
        raise InputError(
            f"instance map: {instance.shape[1]}x{instance.shape[0]} differs from the label map's "
            f"{label.shape[1]}x{label.shape[0]}"
        )
    return core.check_item(
        Item(label, instance, style_from(request.style, limit, core.manifest.feat_num))
    )


def response_for(request: pb.RenderRequest, image: np.ndarray) -> pb.RenderResponse:
    """The RenderResponse carrying `image` in the requested format (runs in the I/O threads)."""
    if request.output_format == pb.OUTPUT_FORMAT_RAW:
        raw = pb.RawArray(shape=list(image.shape), dtype=pb.DTYPE_UINT8, data=image.tobytes())
        return pb.RenderResponse(request_id=request.request_id, raw=raw)
    return pb.RenderResponse(request_id=request.request_id, png=encode_png(image))


class RendererService(renderer_pb2_grpc.RendererServicer):
    """`p2phd.v1.Renderer` on a RenderCore."""

    def __init__(self, core: RenderCore):
        self.core = core
        self._info = model_info(core)

    async def _render(
        self, request: pb.RenderRequest, context: grpc.aio.ServicerContext
    ) -> pb.RenderResponse:
        self.core.batcher.admit()  # a full queue refuses before any decoding
        item = await self.core.in_io(item_from, request, self.core)
        image = await self.core.render(item, context)
        return await self.core.in_io(response_for, request, image)

    async def Render(self, request, context):
        return await self.core.unary("Render", context, lambda: self._render(request, context))

    async def RenderStream(
        self, request_iterator, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RenderResponse]:
        def failed(req: pb.RenderRequest, code: grpc.StatusCode, message: str):
            return pb.RenderResponse(
                request_id=req.request_id, error=pb.ItemError(code=code.name, message=message)
            )

        async for resp in self.core.stream(
            "RenderStream", request_iterator, lambda r: self._render(r, context), failed, context
        ):
            yield resp

    async def GetModelInfo(self, request, context):
        async def handle() -> pb.ModelInfo:
            return self._info

        return await self.core.unary("GetModelInfo", context, handle)


def wire_class(c) -> pb.SemanticClass | None:
    """A manifest class as a wire message, or None when its values do not fit the wire's types
    (an id beyond int32, a colour that is not three integers 0..255)."""
    try:
        color = [int(v) for v in c.color]
        if len(color) != 3 or not all(0 <= v <= 255 for v in color) or isinstance(c.color, str):
            return None
        return pb.SemanticClass(id=c.id, name=str(c.name), color=color, is_thing=bool(c.is_thing))
    except (TypeError, ValueError):
        return None


def model_info(core: RenderCore) -> pb.ModelInfo:
    """GetModelInfo's answer, built once at start: classes whose manifest values cannot be sent
    are left out with a warning, so the call never fails on them (clients such as the editor's
    --server mode depend on it)."""
    m = core.manifest
    classes = []
    for c in m.semantic_classes():
        wired = wire_class(c)
        if wired is None:
            log.warning("GetModelInfo: class %s left out: its id or colour does not fit the wire "
                        "(int32 id, three integers 0..255)", clipped(c))  # fmt: skip
        else:
            classes.append(wired)
    return pb.ModelInfo(
        label_nc=m.label_nc,
        instance=m.instance,
        feat_num=m.feat_num,
        size_multiple=m.size_multiple,
        classes=classes,
        has_features=m.features,
        has_encoder=m.encoder,
        max_batch_size=core.batching.max_batch_size,
        max_image_pixels=core.max_image_pixels,
        describe_json=json.dumps(core.renderer.describe(), default=str),
        input_kind=m.input_kind,
        input_nc=m.input_nc,
    )
