"""Calls that end early or never do: a cancelled queued request gives its queue slot back, a
cancelled stream is not an error in the log, idle streams time out and cannot starve health
checks, and GetModelInfo answers whatever the manifest's classes hold."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from p2phd.engine.serving.metrics import HTTP_MAX_CONNECTIONS
from p2phd.engine.serving.wire import grpc_service_pb2 as kpb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc, renderer_pb2_grpc
from p2phd.engine.serving.wire import renderer_pb2 as pb
from tests.reliability.test_request_cost import raw_map
from tests.server.conftest import make_maps


def wait_for(condition, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def errors_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_cancelled_queued_request_gives_its_queue_slot_back(start_server, gated, caplog):
    s = start_server(gated, max_queue=2, max_batch_size=1, max_queue_delay_us=0)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    request = pb.RenderRequest(label=raw_map(make_maps()[0]))
    gated.engine.gate.clear()
    running = stub.Render.future(request, timeout=60)
    assert gated.engine.entered.wait(20)
    first = stub.Render.future(request, timeout=60)
    wait_for(lambda: s.server.core.batcher.depth == 1, "the second request never queued")
    second = stub.Render.future(request, timeout=60)  # queued behind an equal request
    wait_for(lambda: s.server.core.batcher.depth == 2, "the third request never queued")
    second.cancel()
    wait_for(lambda: s.server.core.batcher.depth == 1, "the cancelled request kept its slot")
    again = stub.Render.future(request, timeout=60)  # the freed slot takes a new request
    wait_for(lambda: s.server.core.batcher.depth == 2, "the next request was not queued")
    gated.engine.gate.set()
    assert all(f.result().png for f in (running, first, again))
    assert errors_logged(caplog) == []


def test_a_cancelled_stream_is_not_logged_as_an_error(start_server, gated, caplog):
    s = start_server(gated, max_batch_size=4, max_queue_delay_us=0)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    request = pb.RenderRequest(label=raw_map(make_maps()[0]))
    gated.engine.gate.clear()
    stream = stub.RenderStream(iter([request] * 8), timeout=60)
    assert gated.engine.entered.wait(20)
    wait_for(lambda: s.server.core.batcher.depth >= 3, "the stream's items never queued")
    stream.cancel()
    gated.engine.gate.set()
    wait_for(lambda: s.server.core.batcher.depth == 0, "the stream's items stayed queued")
    assert stub.Render(request, timeout=30).png
    assert errors_logged(caplog) == []


def test_idle_streams_cannot_starve_health_checks_and_time_out(start_server):
    s = start_server(max_concurrent_rpcs=4, stream_idle_seconds=1.5)
    channel = grpc.insecure_channel(s.target)
    stub = renderer_pb2_grpc.RendererStub(channel)
    release = threading.Event()

    def silent():  # a request stream that sends nothing until the test ends
        release.wait(30)
        yield from ()

    idle = [stub.RenderStream(silent(), timeout=30) for _ in range(4)]
    try:
        wait_for(lambda: s.server.call_limit.open == 4, "the idle streams never opened")
        request = pb.RenderRequest(label=raw_map(make_maps()[0]))
        with pytest.raises(grpc.RpcError) as e:
            stub.Render(request, timeout=30)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        kserve = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert kserve.ServerLive(kpb.ServerLiveRequest(), timeout=10).live
        assert kserve.ServerReady(kpb.ServerReadyRequest(), timeout=10).ready
        for stream in idle:  # the idle timeout ends each of them
            with pytest.raises(grpc.RpcError) as e:
                list(stream)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "stream idle" in e.value.details()
        assert stub.Render(request, timeout=30).png
    finally:
        release.set()


def test_model_info_answers_whatever_values_the_manifest_classes_hold(start_server, gated):
    """Values a manifest check may let through (an id of 2**40, colours as a string) leave
    those classes out of GetModelInfo instead of failing the call."""

    def factory(config):
        engine = gated(config)
        engine.manifest = dataclasses.replace(
            engine.manifest,
            classes=[
                {"id": 1, "name": "road", "color": [128, 64, 128]},
                {"id": 2**40, "name": "huge", "color": [1, 2, 3]},
                {"id": 3, "name": "text", "color": "red"},
                {"id": 4, "name": "bright", "color": [999, 0, 0]},
            ],
        )
        return engine

    s = start_server(factory)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert [(c.id, c.name, list(c.color)) for c in info.classes] == [(1, "road", [128, 64, 128])]
    assert info.label_nc == s.server.core.manifest.label_nc


def test_shutdown_keeps_to_the_grace_period_while_a_batch_runs(start_server, gated):
    s = start_server(gated, max_batch_size=1, max_queue_delay_us=0)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    gated.engine.gate.clear()  # the batch cannot end until the test opens the gate
    running = stub.Render.future(pb.RenderRequest(label=raw_map(make_maps()[0])), timeout=60)
    assert gated.engine.entered.wait(20)
    try:
        assert s.call(s.server.stop(grace=0.5), timeout=20) is False  # returned, batch abandoned
        with pytest.raises(grpc.RpcError):
            running.result(timeout=20)
    finally:
        gated.engine.gate.set()


def test_many_idle_connections_to_the_metrics_port_cannot_grow_its_threads(start_server):
    s = start_server()
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", s.server.metrics_port)) for _ in range(40)]
    try:
        time.sleep(0.5)  # let the server accept (and turn away) all of them
        assert threading.active_count() - before <= HTTP_MAX_CONNECTIONS
    finally:
        for c in idle:
            c.close()

    def scraped() -> bool:
        try:
            return "p2phd_requests" in s.metrics_text()
        except OSError:  # turned away while the closed connections' threads end
            return False

    wait_for(scraped, "metrics did not answer again")
