"""p2phd.v1.Renderer on a real server: unary, streaming, model info, health, reflection, errors."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from p2phd.common.errors import InputError
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from p2phd.engine.serving.client import RenderClient, RenderItem
from p2phd.engine.serving.wire import renderer_pb2 as pb
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.doubles.engine import WrappedEngine
from tests.server.conftest import LABEL_NC, make_maps


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def assert_same_image(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal up to float rounding (a batch of 4 may round a few pixels differently than 1)."""
    assert actual.shape == expected.shape and actual.dtype == np.uint8
    assert np.abs(actual.astype(np.int16) - expected).max() <= 2


@pytest.fixture
def served(start_server):
    return start_server(max_batch_size=4, max_queue_delay_us=2000)


@pytest.fixture
def local(server_package):
    with Renderer(server_package) as r:
        yield r


def test_render_returns_what_the_engine_renders_raw_and_png(served, local):
    label, instance = make_maps(seed=1)
    expected = local.render(label, instance, Style(seed=5))[0]
    with RenderClient(served.target) as c:
        raw = c.render(label, instance, seed=5)
        via_png = c.render(png(label), png(instance.astype(np.uint16)), seed=5)
    assert raw.dtype == np.uint8 and raw.shape == (32, 64, 3)
    assert_same_image(raw, expected)
    assert_same_image(via_png, expected)


def test_png_output_and_request_id_round_trip(served, local):
    label, instance = make_maps(seed=2)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(served.target))
    request = RenderItem(png(label), png(instance.astype(np.uint16)), request_id="r-42").request(
        output_raw=False
    )
    response = stub.Render(request, timeout=30)
    assert response.request_id == "r-42"
    image = np.asarray(Image.open(io.BytesIO(response.png)))
    assert_same_image(image, local.render(label, instance)[0])


def test_stream_answers_every_id_and_reports_a_bad_item_without_ending(served, local):
    items = []
    for i in range(6):
        label, instance = make_maps(seed=10 + i)
        items.append(RenderItem(label, instance, seed=i, request_id=f"id-{i}"))
    bad = make_maps(seed=99)[0].copy()
    bad[0, 0] = LABEL_NC + 3
    items.insert(3, RenderItem(bad, None, request_id="bad"))
    with RenderClient(served.target) as c:
        results = dict(c.render_stream(items))
    assert sorted(results) == sorted(it.request_id for it in items)
    assert isinstance(results["bad"], InputError)
    assert f"class id {LABEL_NC + 3}" in str(results["bad"])
    for i in range(6):
        label, instance = make_maps(seed=10 + i)
        assert_same_image(results[f"id-{i}"], local.render(label, instance, Style(seed=i))[0])


def test_model_info_describes_the_served_package(served):
    with RenderClient(served.target) as c:
        info = c.model_info()
    assert info.label_nc == LABEL_NC and info.instance
    assert info.max_batch_size == 4
    assert len(info.classes) == LABEL_NC
    assert '"backend"' in info.describe_json


def test_health_reports_serving_for_the_server_and_both_services(served):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(served.target))
    for service in ("", "p2phd.v1.Renderer", "inference.GRPCInferenceService"):
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service


def test_reflection_lists_both_services(served):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(served.target))
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    names = {s.name for s in response.list_services_response.service}
    assert {"p2phd.v1.Renderer", "inference.GRPCInferenceService"} <= names
    assert "grpc.health.v1.Health" in names


def _raw(a: np.ndarray, dtype=pb.DTYPE_UINT8, shape=None) -> pb.Map:
    shape = list(a.shape) if shape is None else shape
    return pb.Map(raw=pb.RawArray(shape=shape, dtype=dtype, data=a.tobytes()))


LABEL, INSTANCE = make_maps(seed=3)
OUT_OF_RANGE = LABEL.copy()
OUT_OF_RANGE[5, 7] = 200


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (pb.RenderRequest(), "label map: missing"),
        (pb.RenderRequest(label=pb.Map(png=b"\x89PNG\r\n\x1a\n broken")), "label map"),
        (pb.RenderRequest(label=pb.Map(png=b"GIF89a not a png")), "not a PNG"),
        (pb.RenderRequest(label=_raw(OUT_OF_RANGE)), "class id 200"),
        (pb.RenderRequest(label=_raw(LABEL, shape=[32, 65])), "bytes of data"),
        (pb.RenderRequest(label=_raw(LABEL, shape=[0, 64])), "expected [H, W]"),
        (pb.RenderRequest(label=_raw(LABEL, shape=[1 << 20, 1 << 20])), "exceeds"),
        (pb.RenderRequest(label=_raw(LABEL, dtype=pb.DTYPE_INT32)), "bytes of data"),
        (
            pb.RenderRequest(label=_raw(LABEL), instance=_raw(INSTANCE[:16], pb.DTYPE_INT32)),
            "differs",
        ),
        (
            pb.RenderRequest(label=pb.Map(png=png(np.zeros((8, 8, 3), np.uint8)))),
            "PNG mode 'RGB'",
        ),
        (
            pb.RenderRequest(label=_raw(LABEL), style=pb.Style(reference_png=b"nope")),
            "style reference",
        ),
    ],
    ids=[
        "empty", "truncated-png", "not-png", "label-out-of-range", "raw-size-mismatch",
        "zero-size", "huge-declared-shape", "dtype-mismatch", "instance-shape", "rgb-label",
        "bad-reference",
    ],
)  # fmt: skip
def test_bad_inputs_get_invalid_argument_with_a_reason(served, request_, reason):
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(served.target))
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(request_, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in e.value.details()
    # The server keeps serving after every bad request.
    assert stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10).label_nc == LABEL_NC


def test_oversize_message_gets_resource_exhausted_with_the_limit(start_server):
    s = start_server(max_message_bytes=64 << 10)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    big = np.zeros((512, 512), np.uint8)
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(pb.RenderRequest(label=_raw(big)), timeout=30)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in e.value.details()


class FailingOnMarker(WrappedEngine):
    """The real renderer, except that a batch holding a pixel of class 11 at (0, 0) raises
    `error` (a backend fault by default), and it records the size of every batch it gets."""

    def __init__(self, renderer, error: Exception | None = None):
        super().__init__(renderer)
        self.error = error or RuntimeError("simulated backend fault")
        self.batches: list[int] = []

    def render(self, labels, instances=None, style=None):
        self.batches.append(len(labels))
        if (labels[:, 0, 0] == 11).any():
            raise self.error
        return super().render(labels, instances, style)


def test_an_engine_failure_is_internal_for_its_batch_and_the_server_keeps_serving(start_server):
    from p2phd.engine.serving.server import default_renderer

    s = start_server(lambda cfg: FailingOnMarker(default_renderer(cfg)), max_batch_size=1)
    label, instance = make_maps(seed=8)
    marked = label.copy()
    marked[0, 0] = 11
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    bad = stub.Render.future(RenderItem(marked, instance).request(), timeout=30)
    good = stub.Render.future(RenderItem(label, instance).request(), timeout=30)
    with pytest.raises(grpc.RpcError) as e:
        bad.result()
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "simulated backend fault" in e.value.details()
    assert good.result().raw.shape == [32, 64, 3]
    assert stub.Render(RenderItem(label, instance).request(), timeout=30).raw.shape == [32, 64, 3]


def test_an_input_the_engine_rejects_fails_alone_not_its_batch(start_server):
    from p2phd.engine.serving.server import default_renderer

    engines = []

    def factory(cfg):
        engines.append(FailingOnMarker(default_renderer(cfg), InputError("style: no such cluster")))
        return engines[0]

    s = start_server(factory, max_batch_size=4, max_queue_delay_us=200_000)
    label, instance = make_maps(seed=9)
    marked = label.copy()
    marked[0, 0] = 11
    items = [RenderItem(marked if i == 2 else label, instance, request_id=str(i)) for i in range(4)]
    with RenderClient(s.target) as c:
        results = dict(c.render_stream(items))
    assert isinstance(results["2"], InputError) and "no such cluster" in str(results["2"])
    assert all(results[str(i)].shape == (32, 64, 3) for i in (0, 1, 3))
    assert 4 in engines[0].batches  # they were batched together, then retried one by one
