"""`p2phd serve` as a real process (SIGTERM drains the work in flight) and `p2phd client`."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import pytest
from PIL import Image

from p2phd.engine.apps.cli import main
from p2phd.engine.serving.client import RenderItem
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.server.conftest import free_port, make_maps
from tests.server.test_load import metric


def save_png(path, a: np.ndarray):
    Image.fromarray(a).save(path)
    return path


@pytest.fixture
def serve_process(server_package):
    procs = []

    def start(*args: str):
        port, metrics_port = free_port(), free_port()
        cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "serve", str(server_package),
               "--port", str(port), "--metrics-port", str(metrics_port), *args]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        target = f"127.0.0.1:{port}"
        try:
            grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=60)
        except grpc.FutureTimeoutError:
            proc.kill()
            pytest.fail(f"p2phd serve did not come up:\n{proc.communicate()[0]}")
        return proc, target, metrics_port

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigterm_finishes_requests_in_flight_then_exits_zero(serve_process):
    proc, target, metrics_port = serve_process("--max-batch", "1", "--max-queue-delay-us", "0")
    # held: a collected channel cancels its calls; the large image's raw reply is over 4 MiB
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 2**25)])
    stub = renderer_pb2_grpc.RendererStub(channel)
    request = RenderItem(*make_maps(256, 512, seed=1)).request()
    stub.Render(request, timeout=60)
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    def wait_for(name: str, value: float) -> None:
        deadline = time.monotonic() + 30
        while metric(urllib.request.urlopen(url, timeout=5).read().decode(), name) < value:
            assert time.monotonic() < deadline, f"{name} never reached {value}"
            time.sleep(0.005)

    # A large image keeps the engine busy (--max-batch 1) while the six small calls reach the
    # server and wait behind it: a call still on its way when shutdown begins would be refused
    # (it is not in flight) and fail this test for the wrong reason.
    large = stub.Render.future(RenderItem(*make_maps(1024, 2048, seed=2)).request(), timeout=120)
    wait_for("p2phd_queue_seconds_count", 2)  # dispatched: the warm-up call, then the large one
    futures = [stub.Render.future(request, timeout=120) for _ in range(6)]
    wait_for("p2phd_queue_depth", 6)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    with pytest.raises(grpc.RpcError) as refused:  # no new calls once shutdown began
        renderer_pb2_grpc.RendererStub(grpc.insecure_channel(target)).Render(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert large.result().raw.shape == [1024, 2048, 3]
    for f in futures:
        assert f.result().raw.shape == [256, 512, 3]
    assert proc.wait(timeout=60) == 0, proc.communicate()[0]


def test_client_cli_writes_the_rendered_png(start_server, tmp_path, capsys):
    s = start_server()
    label, instance = make_maps(seed=4)
    out = tmp_path / "out" / "photo.png"
    out.parent.mkdir()
    code = main(
        ["client", s.target, "--label", str(save_png(tmp_path / "l.png", label)),
         "--instance", str(save_png(tmp_path / "i.png", instance.astype(np.uint16))),
         "-o", str(out), "--seed", "2"]
    )  # fmt: skip
    assert code == 0
    image = np.asarray(Image.open(io.BytesIO(out.read_bytes())))
    assert image.shape == (32, 64, 3)
    assert [p.name for p in out.parent.iterdir()] == ["photo.png"]  # no temporaries left


def test_client_cli_reports_an_unreachable_server_clearly(tmp_path, capsys):
    label = save_png(tmp_path / "l.png", make_maps()[0])
    code = main(
        ["client", f"127.0.0.1:{free_port()}", "--label", str(label),
         "-o", str(tmp_path / "o.png"), "--timeout", "5"]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "unavailable" in err and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("source", ["/dev/zero", "fifo"])
def test_client_cli_refuses_a_label_that_is_not_a_regular_file(tmp_path, source, capsys):
    """It read /dev/zero until memory ran out (4 GB in 5 s) and blocked forever on a FIFO."""
    if source == "fifo":
        source = tmp_path / "fifo"
        os.mkfifo(source)
    argv = ["client", f"127.0.0.1:{free_port()}", "--label", str(source)]
    assert main([*argv, "-o", str(tmp_path / "o.png")]) == 2
    assert f"label map {source}: not a regular file" in capsys.readouterr().err


def test_client_cli_reports_a_bad_label_as_the_servers_reason(start_server, tmp_path, capsys):
    s = start_server()
    rgb = save_png(tmp_path / "rgb.png", np.zeros((32, 64, 3), np.uint8))
    code = main(["client", s.target, "--label", str(rgb), "-o", str(tmp_path / "o.png")])
    assert code == 2
    assert "INVALID_ARGUMENT" in capsys.readouterr().err
