"""Dynamic batching, Triton style: requests of the same shape wait briefly to share one engine call.

Knobs (as in Triton's `dynamic_batching`): `max_batch_size`, `max_queue_delay_us` (how long the
oldest request may wait for company), `preferred_batch_sizes` (dispatch at once when one can be
formed), and `max_queue` (requests waiting; a full queue raises `Overloaded` at once, so memory
and latency stay bounded under overload).

A request is only batched with requests of the same key (the caller's choice: image shape, style
kind). Requests whose deadline passed or whose caller went away are dropped before they reach the
engine. The engine runs in worker threads, never on the event loop, so the loop keeps answering
health checks under full load. An engine error fails only the requests of that batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from p2phd.common.errors import BackendUnavailable, ConfigError, DeadlineExceeded, Overloaded
from p2phd.engine.backends.base import MAX_BATCH

P = TypeVar("P")
R = TypeVar("R")


@dataclass(frozen=True)
class BatcherConfig:
    """The dynamic batcher's knobs; `instances` is how many batches may run at once."""

    max_batch_size: int = 8
    max_queue_delay_us: int = 2000
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue: int = 64
    instances: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_size <= MAX_BATCH:
            raise ConfigError(f"max_batch_size {self.max_batch_size}: expected 1 to {MAX_BATCH}")
        if self.max_queue_delay_us < 0:
            raise ConfigError(f"max_queue_delay_us {self.max_queue_delay_us}: expected >= 0")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue {self.max_queue}: expected >= 1")
        if self.instances < 1:
            raise ConfigError(f"instances {self.instances}: expected >= 1")
        bad = [p for p in self.preferred_batch_sizes if not 1 <= p <= self.max_batch_size]
        if bad:
            raise ConfigError(
                f"preferred_batch_sizes {bad}: each must be in 1..max_batch_size "
                f"({self.max_batch_size})"
            )


class BatchObserver(Protocol):
    """Receives the batcher's measurements (the server's metrics implement it)."""

    def queue_depth(self, depth: int) -> None: ...

    def dispatched(self, batch_size: int, queue_seconds: Sequence[float]) -> None: ...

    def computed(self, batch_size: int, compute_seconds: float, ok: bool) -> None: ...

    def dropped(self, reason: str) -> None: ...


@dataclass(eq=False)
class _Pending:
    """One waiting request; compared by identity (its payload holds arrays, which have no
    truth value, and two equal requests are still two requests)."""

    key: Hashable
    payload: Any
    future: asyncio.Future
    enqueued: float
    deadline: float | None
    taken: bool = False


@dataclass
class _Queues:
    """Waiting requests, one FIFO per key, with a total count for the queue limit."""

    by_key: dict[Hashable, deque[_Pending]] = field(default_factory=dict)
    count: int = 0

    def push(self, p: _Pending) -> None:
        self.by_key.setdefault(p.key, deque()).append(p)
        self.count += 1

    def remove(self, p: _Pending) -> None:
        q = self.by_key.get(p.key)
        if q is not None and p in q:
            q.remove(p)
            self.count -= 1
            if not q:
                del self.by_key[p.key]

    def oldest(self) -> deque[_Pending] | None:
        """The queue whose head has waited longest (requests are served oldest first)."""
        if not self.by_key:
            return None
        return min(self.by_key.values(), key=lambda q: q[0].enqueued)

    def take(self, q: deque[_Pending], n: int) -> list[_Pending]:
        items = [q.popleft() for _ in range(min(n, len(q)))]
        self.count -= len(items)
        if not q:
            del self.by_key[items[0].key]
        return items


class DynamicBatcher(Generic[P, R]):
    """Groups submitted payloads by key into batches for `run_batch`, run in worker threads.

    `run_batch(payloads) -> results` gets same-key payloads and returns one result per payload,
    in order; an exception returned as a result fails only its own request. Use it from one
    event loop: `start()`, many `await submit(...)`, `await close()`.
    """

    def __init__(
        self,
        run_batch: Callable[[list[P]], Sequence[R]],
        config: BatcherConfig | None = None,
        observer: BatchObserver | None = None,
    ):
        self.config = config or BatcherConfig()
        self._run_batch = run_batch
        self._observer = observer
        self._queues = _Queues()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(self.config.instances)
        self._executor = ThreadPoolExecutor(
            self.config.instances, thread_name_prefix="p2phd-engine"
        )
        self._inflight: set[asyncio.Task] = set()
        self._scheduler: asyncio.Task | None = None
        self._closing = False

    @property
    def depth(self) -> int:
        """Requests waiting (not yet handed to the engine)."""
        return self._queues.count

    def start(self) -> None:
        """Start the scheduler on the running event loop."""
        if self._scheduler is None:
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())

    def admit(self) -> None:
        """Raise now what `submit` would raise at once: Overloaded when the queue is full,
        BackendUnavailable when closing (callers check before costly work such as decoding)."""
        if self._closing or self._scheduler is None:
            raise BackendUnavailable("the server is shutting down; no new requests are accepted")
        if self._queues.count >= self.config.max_queue:
            self._observe("dropped", "queue_full")
            raise Overloaded(
                f"request queue is full ({self.config.max_queue} waiting); retry later"
            )

    async def submit(self, key: Hashable, payload: P, deadline: float | None = None) -> R:
        """Queue `payload` and wait for its result.

        `deadline` is a `time.monotonic()` instant after which the request is dropped unrendered
        (DeadlineExceeded). Raises Overloaded at once when `max_queue` requests already wait.
        """
        self.admit()
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            self._observe("dropped", "deadline")
            raise DeadlineExceeded("the request's deadline passed before it was queued")
        pending = _Pending(key, payload, asyncio.get_running_loop().create_future(), now, deadline)
        self._queues.push(pending)
        self._observe("queue_depth", self._queues.count)
        self._wakeup.set()
        try:
            return await pending.future
        finally:
            if not pending.taken:  # cancelled by the caller while waiting: leave the queue now
                self._queues.remove(pending)
                self._observe("queue_depth", self._queues.count)

    async def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, run every queued request, wait for running batches, stop the workers.

        After `timeout` seconds, requests still waiting fail with BackendUnavailable and batches
        still running are left to their threads: returns False then (True: all work finished).
        """
        self._closing = True
        self._wakeup.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._scheduler is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._scheduler), timeout)
            except TimeoutError:
                self._scheduler.cancel()
                for q in list(self._queues.by_key.values()):
                    for p in self._queues.take(q, len(q)):
                        p.taken = True
                        if not p.future.done():
                            p.future.set_exception(
                                BackendUnavailable("the server shut down before this request ran")
                            )
            if self._inflight:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                await asyncio.wait(set(self._inflight), timeout=left)
        self._executor.shutdown(wait=False)
        return not self._inflight

    def _observe(self, what: str, *args: Any) -> None:
        if self._observer is not None:
            getattr(self._observer, what)(*args)

    async def _schedule(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            if batch is None:
                self._slots.release()
                return
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _dispatch_size(self, n: int) -> int | None:
        """The batch size to send now with `n` requests waiting, or None to wait for more."""
        cfg = self.config
        if n >= cfg.max_batch_size:
            return cfg.max_batch_size
        fitting = [p for p in cfg.preferred_batch_sizes if p <= n]
        return max(fitting) if fitting else None

    async def _next_batch(self) -> list[_Pending] | None:
        """Wait until a batch is due, then take its live requests (None: closed and empty)."""
        delay = self.config.max_queue_delay_us / 1e6
        while True:
            q = self._queues.oldest()
            if q is None:
                if self._closing:
                    return None
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            size = self._dispatch_size(len(q))
            if size is None:
                remaining = q[0].enqueued + delay - time.monotonic()
                if remaining > 0 and not self._closing:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
                    continue
                size = min(len(q), self.config.max_batch_size)
            batch = self._live(self._queues.take(q, size))
            self._observe("queue_depth", self._queues.count)
            if batch:
                return batch

    def _live(self, items: list[_Pending]) -> list[_Pending]:
        """Mark `items` taken and keep those whose caller still waits and whose deadline holds."""
        now = time.monotonic()
        live = []
        for p in items:
            p.taken = True
            if p.future.done():
                self._observe("dropped", "cancelled")
            elif p.deadline is not None and p.deadline <= now:
                self._observe("dropped", "deadline")
                p.future.set_exception(
                    DeadlineExceeded(
                        f"the request's deadline passed after {now - p.enqueued:.3f} s in the "
                        "queue; it was not rendered"
                    )
                )
            else:
                live.append(p)
        return live

    async def _execute(self, batch: list[_Pending]) -> None:
        start = time.monotonic()
        self._observe("dispatched", len(batch), [start - p.enqueued for p in batch])
        ok = False
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run_batch, [p.payload for p in batch]
            )
            if len(results) != len(batch):
                raise RuntimeError(
                    f"engine returned {len(results)} results for a batch of {len(batch)}"
                )
            ok = True
        except Exception as e:  # an engine failure fails this batch only
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e)
        else:
            for p, r in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(r, BaseException):
                    p.future.set_exception(r)
                else:
                    p.future.set_result(r)
        finally:
            self._observe("computed", len(batch), time.monotonic() - start, ok)
            self._slots.release()
