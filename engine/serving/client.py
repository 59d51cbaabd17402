"""A small Python client for the p2phd gRPC server: render one map pair, or many over a stream.

    with RenderClient("127.0.0.1:50051") as c:
        image = c.render(label, instance, seed=3)          # uint8 [H, W, 3]
        for rid, image in c.render_stream(items): ...
        photo = c.render_image(image)                       # an image-to-image (pix2pix) model

Maps may be numpy arrays (sent raw) or PNG bytes/paths (sent as PNG). Server errors come back
as the p2phd error families (InputError, Overloaded, BackendUnavailable, ...), so callers and
the CLI handle them like local ones.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
from PIL import Image

from p2phd.common.decode import DEFAULT_MAX_PIXELS, read_input_file
from p2phd.common.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    InputError,
    Overloaded,
    P2PHDError,
)
from p2phd.engine.serving.config import CLIENT_TIMEOUT_S, DEFAULT_MAX_MESSAGE_BYTES
from p2phd.engine.serving.wire import renderer_pb2 as pb
from p2phd.engine.serving.wire import renderer_pb2_grpc

MapLike = np.ndarray | bytes | str | os.PathLike
_RAW_DTYPES = {np.dtype(np.uint8): pb.DTYPE_UINT8, np.dtype(np.uint16): pb.DTYPE_UINT16,
               np.dtype(np.int32): pb.DTYPE_INT32}  # fmt: skip
_ERRORS = {
    "INVALID_ARGUMENT": InputError,
    "RESOURCE_EXHAUSTED": Overloaded,
    "UNAVAILABLE": BackendUnavailable,
    "DEADLINE_EXCEEDED": DeadlineExceeded,
}


class RemoteError(P2PHDError):
    """The server answered with a status that has no closer p2phd error family."""


def error_for(code_name: str, message: str, target: str) -> P2PHDError:
    """The p2phd error for a gRPC status (by name) returned by the server at `target`."""
    if code_name == "UNAVAILABLE":
        return BackendUnavailable(f"server {target} is unavailable: {message}")
    cls = _ERRORS.get(code_name, RemoteError)
    return cls(f"server {target}: {code_name}: {message}")


def _map(value: MapLike | None, what: str) -> pb.Map | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        dtype = _RAW_DTYPES.get(value.dtype)
        if dtype is None or value.ndim != 2:
            raise InputError(
                f"{what}: array {value.dtype} {value.shape}; expected [H, W] uint8, uint16 or int32"
            )
        data = np.ascontiguousarray(value, value.dtype.newbyteorder("<")).tobytes()
        return pb.Map(raw=pb.RawArray(shape=list(value.shape), dtype=dtype, data=data))
    return pb.Map(png=_encoded(value, what))


def _encoded(value: bytes | str | os.PathLike, what: str) -> bytes:
    """A file's contents (an encoded image, a PEM) given as bytes or as a path to read: a
    regular file within what a server takes by default (a FIFO or /dev/zero is refused)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return read_input_file(value, what, DEFAULT_MAX_PIXELS)


def _input_image(value: MapLike | None) -> pb.InputImage | None:
    """An image-to-image model's input: a uint8 [H, W, C] array (sent raw) or PNG/JPEG bytes
    or path (sent encoded)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        if value.dtype != np.uint8 or value.ndim != 3:
            raise InputError(
                f"input image: array {value.dtype} {value.shape}; expected uint8 [H, W, C]"
            )
        raw = pb.RawArray(shape=list(value.shape), dtype=pb.DTYPE_UINT8, data=value.tobytes())
        return pb.InputImage(raw=raw)
    return pb.InputImage(encoded=_encoded(value, "input image"))


@dataclass
class RenderItem:
    """One image to render: maps, optional seed or reference photo PNG, and an id for streams;
    for an image-to-image model, `image` instead of the maps."""

    label: MapLike | None
    instance: MapLike | None = None
    seed: int | None = None
    reference_png: bytes | None = None
    request_id: str = ""
    class_cluster: dict[int, int] = field(default_factory=dict)
    image: MapLike | None = None

    def request(self, output_raw: bool = True) -> pb.RenderRequest:
        style = None
        if self.reference_png is not None:
            style = pb.Style(reference_png=self.reference_png)
        elif self.class_cluster:
            style = pb.Style(
                explicit=pb.ExplicitStyle(class_cluster=self.class_cluster, seed=self.seed or 0)
            )
        elif self.seed is not None:
            style = pb.Style(seed=self.seed)
        return pb.RenderRequest(
            request_id=self.request_id,
            label=_map(self.label, "label map"),
            instance=_map(self.instance, "instance map"),
            style=style,
            output_format=pb.OUTPUT_FORMAT_RAW if output_raw else pb.OUTPUT_FORMAT_PNG,
            image=_input_image(self.image),
        )


def image_of(response: pb.RenderResponse) -> np.ndarray:
    """The uint8 [H, W, 3] image in a RenderResponse (raw or PNG)."""
    kind = response.WhichOneof("image")
    if kind == "raw":
        return np.frombuffer(response.raw.data, np.uint8).reshape(tuple(response.raw.shape))
    if kind == "png":
        return np.asarray(Image.open(io.BytesIO(response.png)).convert("RGB"))
    raise RemoteError(f"response {response.request_id!r} carries no image")


class RenderClient:
    """A connection to a p2phd server. TLS when `ca` (PEM bytes or path) is given; `cert` and
    `key` add a client certificate for mTLS. `timeout` is each call's deadline in seconds."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = CLIENT_TIMEOUT_S,
        ca: bytes | str | os.PathLike | None = None,
        cert: bytes | str | os.PathLike | None = None,
        key: bytes | str | os.PathLike | None = None,
        server_name: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ):
        self.target = target
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        if ca is None and cert is None and key is None:
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_pem(ca, "CA"),
                private_key=_pem(key, "client key"),
                certificate_chain=_pem(cert, "client certificate"),
            )
            self.channel = grpc.secure_channel(target, creds, options=options)
        self.stub = renderer_pb2_grpc.RendererStub(self.channel)

    def _fail(self, e: grpc.RpcError) -> P2PHDError:
        return error_for(e.code().name, e.details() or "", self.target)

    def render(
        self,
        label: MapLike,
        instance: MapLike | None = None,
        *,
        seed: int | None = None,
        reference_png: bytes | None = None,
        timeout: float | None = None,
    ) -> np.ndarray:
        """Render one label (and instance) map on the server: uint8 [H, W, 3]."""
        request = RenderItem(label, instance, seed, reference_png).request()
        return self._render(request, timeout)

    def render_image(self, image: MapLike, *, timeout: float | None = None) -> np.ndarray:
        """Translate one input image with an image-to-image model on the server: uint8
        [H, W, 3]. `image` is a uint8 [H, W, C] array or PNG/JPEG bytes or path."""
        return self._render(RenderItem(None, image=image).request(), timeout)

    def _render(self, request: pb.RenderRequest, timeout: float | None) -> np.ndarray:
        try:
            response = self.stub.Render(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise self._fail(e) from None
        return image_of(response)

    def render_stream(
        self, items: Iterable[RenderItem], *, timeout: float | None = None
    ) -> Iterator[tuple[str, np.ndarray | P2PHDError]]:
        """Render many items over one stream; yields (request_id, image or error) as they finish.

        Order is not guaranteed; a failed item yields its error and the stream goes on.
        """
        requests = (item.request() for item in items)
        try:
            for response in self.stub.RenderStream(requests, timeout=timeout or self.timeout):
                if response.HasField("error"):
                    err = response.error
                    yield response.request_id, error_for(err.code, err.message, self.target)
                else:
                    yield response.request_id, image_of(response)
        except grpc.RpcError as e:
            raise self._fail(e) from None

    def model_info(self) -> pb.ModelInfo:
        try:
            return self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._fail(e) from None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RenderClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pem(value: bytes | str | os.PathLike | None, what: str) -> bytes | None:
    return None if value is None else _encoded(value, f"TLS {what}")


def remote_batch_renderer(target: str, **client_options):
    """`(render_batch, model info)` for `p2phd render --server`: each batch goes to the server
    as one stream, so its dynamic batcher sees the images together. For an image-to-image model
    (info.input_kind "image") render_batch's first argument is the input images."""
    client = RenderClient(target, **client_options)
    info = client.model_info()

    def render_batch(labels: np.ndarray, instances: np.ndarray | None, styles) -> np.ndarray:
        if info.input_kind == "image":  # `labels` are the input images [B, H, W, C]
            return _stream_batch(client, [RenderItem(None, image=im, request_id=str(i))
                                          for i, im in enumerate(labels)])  # fmt: skip
        items = []
        for i, style in enumerate(styles):
            reference = None
            if style.reference is not None:
                buf = io.BytesIO()
                Image.fromarray(style.reference).save(buf, format="PNG")
                reference = buf.getvalue()
            inst = None if instances is None else instances[i]
            items.append(RenderItem(labels[i], inst, style.seed, reference, str(i)))
        return _stream_batch(client, items)

    return render_batch, info


def _stream_batch(client: RenderClient, items: list[RenderItem]) -> np.ndarray:
    """Render items whose request_ids are 0..n-1 over one stream, in order; the first error
    raises."""
    images: list[np.ndarray | None] = [None] * len(items)
    for rid, result in client.render_stream(items):
        if isinstance(result, P2PHDError):
            raise result
        images[int(rid)] = result
    return np.stack(images)
