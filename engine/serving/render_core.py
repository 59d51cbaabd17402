"""What both gRPC services share: the renderer behind the batcher, I/O threads, error statuses.

A request's pixels never touch the event loop: decoding, validation and PNG encoding run in a
small I/O thread pool, the engine in the batcher's worker thread. Each item is validated on its
own before it is queued, so one bad request cannot fail the batch it would have joined.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import grpc
import numpy as np

from p2phd.common.decode import validate_maps
from p2phd.common.errors import (
    DeadlineExceeded,
    InputError,
    Overloaded,
    P2PHDError,
    is_out_of_memory,
)
from p2phd.common.image_input import validate_images
from p2phd.engine.core.package import Manifest
from p2phd.engine.core.style import Style
from p2phd.engine.serving.batcher import BatcherConfig, DynamicBatcher
from p2phd.engine.serving.config import ServerConfig
from p2phd.engine.serving.metrics import ServerMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
Req = TypeVar("Req")
Resp = TypeVar("Resp")


class RendererLike(Protocol):
    """What the server needs of a renderer (`p2phd.engine.core.renderer.Renderer` provides it)."""

    manifest: Manifest

    def render(self, labels: np.ndarray, instances: np.ndarray | None, style: Any) -> Any: ...

    def render_images(self, images: np.ndarray) -> Any: ...

    def fitted_size(self, h: int, w: int, what: str = ...) -> tuple[int, int]: ...

    def describe(self) -> dict: ...

    def close(self) -> None: ...


@dataclass
class Item:
    """One validated image request: label [H, W] uint8, instance [H, W] int32 or None, style;
    for an image-to-image model, `image` uint8 [H, W, C] instead (label and instance None)."""

    label: np.ndarray | None
    instance: np.ndarray | None
    style: Style
    image: np.ndarray | None = None

    @property
    def key(self) -> tuple:
        """Requests batch together only when this matches (same size, same inputs present)."""
        if self.image is not None:
            return (self.image.shape,)
        return (self.label.shape, self.instance is None)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the request."""
        return (self.image if self.image is not None else self.label).shape[:2]


# A status message travels in the trailing metadata, whose size gRPC limits (8 KiB by default,
# percent-encoded): messages are cut to this, and client-given strings echoed in them to
# ECHO_CHARS, so no request can make its own error unsendable.
MAX_STATUS_CHARS = 1024
ECHO_CHARS = 80


def _cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def clipped(value: Any, limit: int = ECHO_CHARS) -> str:
    """`ascii(value)` cut to about `limit` characters: how errors echo what a client sent."""
    return _cut(ascii(value), limit)


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and message for an exception (P2PHDError families carry their own), the
    message cut to MAX_STATUS_CHARS."""
    if isinstance(exc, P2PHDError):
        code, message = grpc.StatusCode[exc.grpc_status], str(exc)
    else:
        code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
    return code, _cut(message, MAX_STATUS_CHARS)


class RenderCore:
    """The served renderer: validation, batching, threads and metrics, shared by all services."""

    def __init__(
        self,
        renderer: RendererLike,
        batching: BatcherConfig,
        metrics: ServerMetrics,
        *,
        max_image_pixels: int,
        io_threads: int = ServerConfig.io_threads,
        model_name: str = ServerConfig.model_name,
        stream_idle_seconds: float = ServerConfig.stream_idle_seconds,
    ):
        self.renderer = renderer
        self.manifest = renderer.manifest
        self.metrics = metrics
        self.model_name = model_name
        self.max_image_pixels = max_image_pixels
        self.stream_idle_seconds = stream_idle_seconds
        self.batching = batching
        self.batcher: DynamicBatcher[Item, np.ndarray] = DynamicBatcher(
            self.run_batch, batching, observer=metrics
        )
        self._io = ThreadPoolExecutor(io_threads, thread_name_prefix="p2phd-io")
        self.accepting = False

    def start(self) -> None:
        self.batcher.start()
        self.accepting = True

    async def close(self, timeout: float | None) -> bool:
        """Finish queued work (up to `timeout` seconds), then stop the threads and the engine.
        Returns False when a batch was still running at the timeout: the engine is then left
        open under it (the process is about to exit; closing it mid-call could crash)."""
        self.accepting = False
        finished = await self.batcher.close(timeout)
        self._io.shutdown(wait=finished)
        if finished:
            self.renderer.close()
        return finished

    async def in_io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in the I/O threads (decode, validate, encode), off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    def check_item(self, item: Item) -> Item:
        """Validate one request's arrays against the model; raises InputError naming the field."""
        if self.manifest.image_input or item.image is not None:
            return self._check_image(item)
        if item.label is None:
            raise InputError("label map: missing; this model takes label maps")
        h, w = item.label.shape if item.label.ndim == 2 else (0, 0)
        if item.label.ndim != 2 or 0 in item.label.shape:
            raise InputError(f"label map: shape {item.label.shape}; expected [H, W] with H, W > 0")
        self.check_size(h, w, "label map")
        validate_maps(item.label[None], None if item.instance is None else item.instance[None],
                      self.manifest.label_nc)  # fmt: skip
        ref = item.style.reference
        if ref is not None and (ref.dtype != np.uint8 or ref.shape != (h, w, 3)):
            raise InputError(
                f"style reference: photo {ref.shape} {ref.dtype}; expected uint8 [{h}, {w}, 3] "
                "(the label map's size, RGB)"
            )
        if item.instance is not None and item.instance.dtype != np.int32:
            item.instance = item.instance.astype(np.int32)
        return item

    def _check_image(self, item: Item) -> Item:
        m = self.manifest
        if not m.image_input:
            raise InputError(f"input image: this model takes label maps (label_nc {m.label_nc})")
        if item.image is None or item.label is not None:
            raise InputError(
                f"input image: missing; this image-to-image model takes an image of {m.input_nc} "
                "channel(s), not a label map"
            )
        image = item.image
        if image.ndim == 2 and m.input_nc == 1:
            item.image = image = image[..., None]
        if image.ndim != 3 or 0 in image.shape:
            raise InputError(f"input image: shape {image.shape}; expected [H, W, C] with H, W > 0")
        h, w = image.shape[:2]
        self.check_size(h, w, "input image")
        validate_images(image[None], m.input_nc)
        return item

    def check_size(self, h: int, w: int, what: str) -> None:
        """Refuse an h x w input over the pixel limit as sent, or whose work after the size
        policy is over the engine's limit (before any queueing; raw maps before their copy)."""
        if h * w > self.max_image_pixels:
            raise InputError(
                f"{what}: {w}x{h} = {w * h} pixels exceeds the server's limit of "
                f"{self.max_image_pixels}"
            )
        self.renderer.fitted_size(h, w, what)

    async def render(self, item: Item, context: grpc.aio.ServicerContext) -> np.ndarray:
        """Queue a validated item and wait for its uint8 [H, W, 3] image."""
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining
        return await self.batcher.submit(item.key, item, deadline)

    def _render(self, items: list[Item]) -> list[np.ndarray]:
        if items[0].image is not None:
            return list(self.renderer.render_images(np.stack([it.image for it in items])))
        labels = np.stack([it.label for it in items])
        instances = None if items[0].instance is None else np.stack([it.instance for it in items])
        return list(self.renderer.render(labels, instances, [it.style for it in items]))

    def run_batch(self, items: list[Item]) -> list[np.ndarray | P2PHDError]:
        """Render a batch; if the engine rejects one item's input (a style choosing a cluster
        that does not exist, say), render the items one by one so only that item fails. If the
        engine runs out of memory, retry the batch in halves: a big batch degrades, never dies."""
        try:
            return self._render(items)
        except InputError as e:
            if len(items) == 1:
                return [e]
            return [r for it in items for r in self.run_batch([it])]
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            h, w = items[0].size
            if len(items) == 1:
                return [Overloaded(f"out of memory rendering one {w}x{h} image ({e})")]
            log.warning("out of memory on a batch of %d %dx%d images; retrying in halves",
                        len(items), w, h)  # fmt: skip
            half = len(items) // 2
            return self.run_batch(items[:half]) + self.run_batch(items[half:])

    async def unary(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        handle: Callable[[], Awaitable[Resp]],
    ) -> Resp:
        """Run one unary call: record its metrics and turn an exception into its gRPC status."""
        start = time.monotonic()
        try:
            response = await handle()
        except asyncio.CancelledError:
            self.metrics.request_done(method, "CANCELLED", time.monotonic() - start)
            raise
        except Exception as e:
            code, message = status_of(e)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method)
            self.metrics.request_done(method, code.name, time.monotonic() - start)
            await context.abort(code, message)
        self.metrics.request_done(method, "OK", time.monotonic() - start)
        return response

    async def stream(
        self,
        method: str,
        requests: AsyncIterator[Req],
        handle: Callable[[Req], Awaitable[Resp]],
        on_error: Callable[[Req, grpc.StatusCode, str], Resp],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Resp]:
        """Handle stream items concurrently, yielding each response as it completes.

        At most `max_batch_size * 2` items of one stream are in flight or answered but not yet
        handed to gRPC (backpressure on the reader: beyond that, a client that stops reading
        holds back only what gRPC's flow-control window lets through); an item's failure becomes
        its own response (`on_error`), the stream goes on. A stream that sends nothing for
        `stream_idle_seconds` while none of its items is pending ends DEADLINE_EXCEEDED.
        """
        out: asyncio.Queue = asyncio.Queue()
        slots = asyncio.Semaphore(2 * self.batching.max_batch_size)
        pending = 0  # items read and not yet handed to gRPC
        done = object()

        async def one(req: Req) -> None:
            start = time.monotonic()
            try:
                resp = await handle(req)
                status = "OK"
            except Exception as e:
                code, message = status_of(e)
                if code is grpc.StatusCode.INTERNAL:
                    log.exception("%s item failed", method)
                resp, status = on_error(req, code, message), code.name
            self.metrics.request_done(method, status, time.monotonic() - start)
            await out.put(resp)

        async def next_request(it: AsyncIterator[Req]) -> Req:
            """The next request; raises DeadlineExceeded once the stream has been idle too long."""
            reading = asyncio.ensure_future(anext(it))
            idle = self.stream_idle_seconds
            try:
                while not (await asyncio.wait({reading}, timeout=idle))[0]:
                    if pending == 0:
                        raise DeadlineExceeded(
                            f"stream idle: no request for {idle:g} s and nothing pending (the "
                            "server's stream idle timeout); open a new stream to go on"
                        )
                return reading.result()
            finally:
                reading.cancel()  # idle, or the stream is over: nobody waits for it any more

        async def read() -> None:
            nonlocal pending
            tasks: set[asyncio.Task] = set()
            it = aiter(requests)
            try:
                while True:
                    try:
                        req = await next_request(it)
                    except StopAsyncIteration:
                        break
                    pending += 1
                    await slots.acquire()
                    task = asyncio.get_running_loop().create_task(one(req))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.wait(set(tasks))
            finally:
                for task in tasks:
                    task.cancel()
                await out.put(done)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while (resp := await out.get()) is not done:
                yield resp
                slots.release()  # sent: room for one more item
                pending -= 1
            try:
                await reader  # re-raises a failure reading the request stream
            except P2PHDError as e:
                await context.abort(*status_of(e))
        finally:
            reader.cancel()
