"""Overload at 4x capacity, scaled down: only OK or RESOURCE_EXHAUSTED, memory bounded, and full
recovery afterwards. (The full 60 s run against `p2phd serve` is benchmarks/overload.py.)"""

from __future__ import annotations

import threading
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from p2phd.engine.serving.client import RenderItem
from p2phd.engine.serving.server import default_renderer
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.doubles.engine import WrappedEngine
from tests.server.conftest import make_maps

BATCH_SECONDS = 0.05  # the throttled engine's time per batch: capacity is max_batch / this


class ThrottledEngine(WrappedEngine):
    """The real renderer, held to a fixed time per batch so that capacity is known."""

    def __init__(self, renderer):
        super().__init__(renderer)
        self.images = 0

    def render(self, labels, instances=None, style=None):
        end = time.monotonic() + BATCH_SECONDS
        out = super().render(labels, instances, style)
        time.sleep(max(0.0, end - time.monotonic()))
        self.images += len(labels)
        return out


def test_four_times_capacity_gets_only_ok_or_resource_exhausted_then_recovers(start_server, memory):
    engines: list[ThrottledEngine] = []

    def factory(cfg):
        engines.append(ThrottledEngine(default_renderer(cfg)))
        return engines[0]

    max_batch, seconds = 2, 4.0
    s = start_server(factory, max_batch_size=max_batch, max_queue_delay_us=1000, max_queue=8)
    channel = grpc.insecure_channel(s.target)
    stub = renderer_pb2_grpc.RendererStub(channel)
    requests = [RenderItem(*make_maps(seed=i), seed=i).request() for i in range(8)]
    for r in requests:  # warm up every path once before measuring memory
        stub.Render(r, timeout=30)
    memory.reset_peak()
    before = memory.rss()

    rate = 4 * max_batch / BATCH_SECONDS  # 4x capacity, open loop
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def done(future) -> None:
        code = future.code().name if future.exception() else "OK"
        with lock:
            statuses[code] = statuses.get(code, 0) + 1

    start = time.monotonic()
    sent = 0
    futures = []
    while (now := time.monotonic()) < start + seconds:
        due = start + sent / rate
        if due > now:
            time.sleep(due - now)
        f = stub.Render.future(requests[sent % len(requests)], timeout=60)
        f.add_done_callback(done)
        futures.append(f)
        sent += 1
    for f in futures:
        f.exception()  # wait for every answer
    peak = memory.peak()

    assert sum(statuses.values()) == sent
    assert set(statuses) <= {"OK", "RESOURCE_EXHAUSTED"}, statuses
    assert statuses.get("RESOURCE_EXHAUSTED", 0) > 0 and statuses.get("OK", 0) > 0
    assert engines[0].images >= statuses["OK"]  # everything answered OK was really rendered
    assert peak - before < 128, (before, peak)  # a bounded queue: bounded memory

    # Full recovery: the queue drained, health SERVING, and load below capacity is all OK.
    assert s.server.core.batcher.depth == 0
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    for r in requests:
        assert list(stub.Render(r, timeout=30).raw.shape) == [32, 64, 3]
    channel.close()
