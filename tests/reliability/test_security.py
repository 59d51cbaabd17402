"""Security: the server listens on loopback unless told otherwise, its size and concurrency limits
hold at their boundaries, and nothing in a request is ever treated as a path to open."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from p2phd.engine.apps.cli import build_parser
from p2phd.engine.serving.server import ServerConfig
from p2phd.engine.serving.wire import renderer_pb2 as pb
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.reliability.corpus import grey, png, text_png
from tests.server.conftest import make_maps

# 127.0.0.1, ::ffff:127.0.0.1 (gRPC listens on the IPv4-mapped form) and ::1, as /proc/net/tcp*
# writes them.
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp{,6}) of sockets listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_defaults_bind_loopback_only(start_server):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs /proc/net/tcp (Linux) to see where sockets listen")
    assert ServerConfig(model_dir=Path("m")).host == "127.0.0.1"
    assert build_parser().parse_args(["serve", "m"]).host == "127.0.0.1"
    s = start_server()  # the default host; port 0 and a metrics port picked by the OS
    for port in (s.port, s.server.metrics_port):
        found = listening_addresses(port)
        assert found and found <= LOOPBACK, (port, found)


def test_a_non_loopback_address_cannot_reach_a_default_server(start_server):
    s = start_server()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))  # no packet is sent; picks the outward address
            outward = probe.getsockname()[0]
    except OSError:
        pytest.skip("this machine has no non-loopback IPv4 address")
    if outward.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(OSError), socket.create_connection((outward, s.port), timeout=5):
        pass


def raw(a: np.ndarray) -> pb.Map:
    return pb.Map(raw=pb.RawArray(shape=list(a.shape), dtype=pb.DTYPE_UINT8, data=a.tobytes()))


def test_the_image_pixel_limit_holds_at_its_boundary(start_server):
    limit = 32 * 64
    s = start_server(max_image_pixels=limit)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    at_limit = make_maps(32, 64)[0]
    assert stub.Render(pb.RenderRequest(label=raw(at_limit)), timeout=30).png
    assert stub.Render(pb.RenderRequest(label=pb.Map(png=png(at_limit))), timeout=30).png
    over = grey(33, 64)
    reference = png(np.zeros((33, 64, 3), np.uint8))
    for request in (
        pb.RenderRequest(label=raw(over)),
        pb.RenderRequest(label=pb.Map(png=png(over))),
        pb.RenderRequest(label=raw(at_limit), instance=pb.Map(png=png(grey(33, 64, 1, np.uint16)))),
        pb.RenderRequest(label=raw(at_limit), style=pb.Style(reference_png=reference)),
    ):
        with pytest.raises(grpc.RpcError) as e:
            stub.Render(request, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "exceeds" in e.value.details()
        assert str(limit) in e.value.details()


def test_the_message_size_limit_holds_both_ways(start_server):
    s = start_server(max_message_bytes=64 << 10)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    fits = grey(128, 128, 2)  # 16 KiB in, 48 KiB raw out
    response = stub.Render(
        pb.RenderRequest(label=raw(fits), output_format=pb.OUTPUT_FORMAT_RAW), timeout=30
    )
    assert list(response.raw.shape) == [128, 128, 3]
    with pytest.raises(grpc.RpcError) as e:  # 64 KiB + 1 in
        stub.Render(pb.RenderRequest(label=raw(grey(257, 256, 2))), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    big_out = grey(160, 160, 2)  # 25 KiB in, 75 KiB raw out: the answer is over the limit
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(
            pb.RenderRequest(label=raw(big_out), output_format=pb.OUTPUT_FORMAT_RAW), timeout=30
        )
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The same image as PNG fits, and the server is unharmed.
    assert stub.Render(pb.RenderRequest(label=raw(big_out)), timeout=30).png


class OpenWatch:
    """Records every file the process opens whose path contains a marker (a sys audit hook;
    hooks cannot be removed, so this one is installed once and switched by `marker`)."""

    marker: str | None = None
    opened: list[str] = []
    installed = False

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.marker and event == "open" and args and cls.marker in str(args[0]):
            cls.opened.append(str(args[0]))

    @classmethod
    def watch(cls, marker: str) -> None:
        if not cls.installed:
            sys.addaudithook(cls.hook)
            cls.installed = True
        cls.marker, cls.opened = marker, []


def test_paths_in_a_request_are_data_never_opened(start_server, tmp_path):
    label, instance = make_maps(seed=3)
    label_file, instance_file = tmp_path / "label.png", tmp_path / "instance.png"
    label_file.write_bytes(png(label))
    instance_file.write_bytes(png(instance.astype(np.uint16)))
    s = start_server()
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    OpenWatch.watch(str(tmp_path))
    try:
        label_file.read_bytes()  # the watch sees opens of these files: it can fail
        assert OpenWatch.opened == [str(label_file)]
        OpenWatch.opened.clear()
        as_bytes = [str(label_file).encode(), f"file://{label_file}".encode()]
        for path in as_bytes:
            requests = [
                pb.RenderRequest(request_id=str(label_file), label=pb.Map(png=path)),
                pb.RenderRequest(
                    label=pb.Map(png=png(label)), instance=pb.Map(png=str(instance_file).encode())
                ),
                pb.RenderRequest(label=raw(label), style=pb.Style(reference_png=path)),
            ]
            for request in requests:
                with pytest.raises(grpc.RpcError) as e:
                    stub.Render(request, timeout=30)
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "PNG" in e.value.details()
        # A path in PNG metadata or in the request id is carried along, never followed.
        response = stub.Render(
            pb.RenderRequest(
                request_id=str(label_file), label=pb.Map(png=text_png(str(label_file)))
            ),
            timeout=30,
        )
        assert response.request_id == str(label_file) and response.png
        opened = list(OpenWatch.opened)
    finally:
        OpenWatch.marker = None
    assert opened == []


def test_the_concurrent_call_limit_refuses_extra_calls_at_once(start_server, gated):
    s = start_server(gated, max_concurrent_rpcs=3, max_batch_size=1, max_queue_delay_us=0)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    request = pb.RenderRequest(label=raw(make_maps()[0]))
    gated.engine.gate.clear()
    held = [stub.Render.future(request, timeout=60) for _ in range(3)]
    assert gated.engine.entered.wait(20)
    deadline = time.monotonic() + 20
    while s.server.core.batcher.depth < 2:  # one call in the engine, two queued: 3 open
        assert time.monotonic() < deadline, "the held calls never queued"
        time.sleep(0.01)
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Concurrent RPC limit" in e.value.details()
    gated.engine.gate.set()
    assert all(f.result().png for f in held)
    assert stub.Render(request, timeout=30).png
