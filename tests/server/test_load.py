"""The server under load: batches form, a full queue answers RESOURCE_EXHAUSTED while health
keeps answering, and expired requests never reach the engine (counted by a wrapping engine)."""

from __future__ import annotations

import re
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from p2phd.engine.serving.client import RenderItem
from p2phd.engine.serving.wire import grpc_service_pb2, grpc_service_pb2_grpc, renderer_pb2_grpc
from tests.server.conftest import make_maps


def metric(text: str, name: str, labels: str = "") -> float:
    """One sample's value from a Prometheus text exposition (0 when absent)."""
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    m = re.search(pattern, text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


def request(seed: int = 0):
    label, instance = make_maps(seed=seed)
    return RenderItem(label, instance, seed=seed).request()


def wait_until(predicate, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


def test_concurrent_requests_form_batches_larger_than_one(start_server, gated):
    s = start_server(gated, max_batch_size=4, max_queue_delay_us=20_000, max_queue=64)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    stub.Render(request(), timeout=30)  # warm up: the engine is idle again afterwards
    gated.engine.gate.clear()
    futures = [stub.Render.future(request(i), timeout=60) for i in range(12)]
    wait_until(lambda: s.server.core.batcher.depth >= 8)  # one in the engine, the rest queued
    gated.engine.gate.set()
    for f in futures:
        assert f.result().raw.shape == [32, 64, 3]
    text = s.metrics_text()
    calls = metric(text, "p2phd_batch_size_count")
    images = metric(text, "p2phd_batch_size_sum")
    assert images == 13
    assert calls < images  # some engine call rendered more than one image
    assert metric(text, "p2phd_batch_size_bucket", '{le="1.0"}') < calls
    assert metric(text, "p2phd_requests_total", '{method="Render",status="OK"}') == 13


def test_overload_answers_resource_exhausted_and_health_stays_serving(start_server, gated):
    s = start_server(gated, max_batch_size=1, max_queue_delay_us=0, max_queue=3)
    channel = grpc.insecure_channel(s.target)
    stub = renderer_pb2_grpc.RendererStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    kserve = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    stub.Render(request(), timeout=30)
    engine = gated.engine
    engine.gate.clear()
    engine.entered.clear()
    first = stub.Render.future(request(1), timeout=60)
    assert engine.entered.wait(20)
    queued = [stub.Render.future(request(i), timeout=60) for i in range(2, 5)]
    wait_until(lambda: s.server.core.batcher.depth == 3)
    rejected = []
    for i in range(4):
        try:
            stub.Render(request(10 + i), timeout=30)
        except grpc.RpcError as e:
            rejected.append(e)
    assert len(rejected) == 4
    assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in rejected)
    assert "queue is full" in rejected[0].details()
    # The event loop is free while the engine is stuck and the queue full.
    check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    assert kserve.ServerLive(grpc_service_pb2.ServerLiveRequest(), timeout=5).live
    engine.gate.set()
    assert first.result().raw.shape == [32, 64, 3]
    assert all(f.result().raw.shape == [32, 64, 3] for f in queued)
    assert stub.Render(request(20), timeout=30).raw.shape == [32, 64, 3]  # recovered
    text = s.metrics_text()
    exhausted = '{method="Render",status="RESOURCE_EXHAUSTED"}'
    assert metric(text, "p2phd_requests_total", exhausted) == 4


def test_expired_deadlines_never_reach_the_engine(start_server, gated):
    s = start_server(gated, max_batch_size=4, max_queue_delay_us=0, max_queue=16)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    stub.Render(request(), timeout=30)
    engine = gated.engine
    before = engine.rendered
    engine.gate.clear()
    engine.entered.clear()
    held = stub.Render.future(request(1), timeout=60)
    assert engine.entered.wait(20)
    short = [stub.Render.future(request(i), timeout=0.3) for i in range(2, 6)]
    for f in short:
        try:
            f.result()
            raise AssertionError("a request past its deadline was answered")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    engine.gate.set()
    held.result()
    stub.Render(request(7), timeout=30)
    # Only the held request and the last one were rendered; the four expired ones never were.
    assert engine.rendered - before == 2
    assert s.server.core.batcher.depth == 0
