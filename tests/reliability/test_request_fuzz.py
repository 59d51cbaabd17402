"""The request path under fuzzing, on a real server: every bad request is INVALID_ARGUMENT with a
reason, good ones render, the server stays up, and its memory stays bounded after the fuzz."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2phd.common.decode import DEFAULT_MAX_PIXELS
from p2phd.engine.serving.server import ServerConfig
from p2phd.engine.serving.wire import grpc_service_pb2 as kserve_pb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc, renderer_pb2_grpc
from p2phd.engine.serving.wire import renderer_pb2 as pb
from tests.reliability.corpus import Case, bad_cases, crafted_png, grey, png
from tests.server.conftest import LABEL_NC, ThreadedServer, make_maps

CASES = bad_cases(LABEL_NC, DEFAULT_MAX_PIXELS)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
RAW_DTYPES = {
    np.dtype(np.uint8): pb.DTYPE_UINT8,
    np.dtype(np.uint16): pb.DTYPE_UINT16,
    np.dtype(np.int32): pb.DTYPE_INT32,
}


@pytest.fixture(scope="module")
def server(server_package):
    s = ThreadedServer(
        ServerConfig(model_dir=server_package, port=0, max_batch_size=4, max_queue_delay_us=1000)
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield renderer_pb2_grpc.RendererStub(channel)


def as_map(value) -> pb.Map | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        raw = pb.RawArray(
            shape=list(value.shape),
            dtype=RAW_DTYPES[value.dtype],
            data=value.astype(value.dtype.newbyteorder("<")).tobytes(),
        )
        return pb.Map(raw=raw)
    return pb.Map(png=value)


def request_of(case: Case) -> pb.RenderRequest:
    return pb.RenderRequest(
        request_id=case.name, label=as_map(case.label), instance=as_map(case.instance)
    )


def assert_alive(stub) -> None:
    label, instance = make_maps(seed=1)
    ok = stub.Render(pb.RenderRequest(label=as_map(label), instance=as_map(instance)), timeout=30)
    assert ok.png


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_corpus_case_is_invalid_argument_with_its_reason(stub, case):
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(request_of(case), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert case.reason in e.value.details()


def test_a_stream_of_bad_and_good_items_answers_each_and_goes_on(stub):
    good = [
        pb.RenderRequest(request_id=f"good-{i}", label=as_map(make_maps(seed=i)[0]))
        for i in range(4)
    ]
    bad = [request_of(c) for c in CASES]
    requests = [x for pair in zip(bad, good * len(bad), strict=False) for x in pair]
    responses = {r.request_id: r for r in stub.RenderStream(iter(requests), timeout=120)}
    assert len(responses) == len(CASES) + 4
    for case in CASES:
        error = responses[case.name].error
        assert error.code == "INVALID_ARGUMENT" and case.reason in error.message
    assert all(responses[f"good-{i}"].png for i in range(4))


def test_an_empty_stream_ends_cleanly_with_no_responses(stub):
    assert list(stub.RenderStream(iter([]), timeout=30)) == []


def test_bytes_that_are_not_a_request_message_fail_that_call_only(server, stub):
    with grpc.insecure_channel(server.target) as channel:
        render = channel.unary_unary("/p2phd.v1.Renderer/Render")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as e:
            render(b"\xff\xff\xff\xff not a protobuf", timeout=30)
    assert e.value.code() != grpc.StatusCode.OK
    assert_alive(stub)


def test_large_ids_render(stub):
    label, _ = make_maps(seed=2)
    for ids in (np.full(label.shape, 65535, np.uint16), np.full(label.shape, 2**31 - 1, np.int32)):
        ids[:8] = 7
        response = stub.Render(
            pb.RenderRequest(label=as_map(label), instance=as_map(ids)), timeout=30
        )
        assert response.png


@pytest.mark.parametrize(("h", "w"), [(1, 1), (1, 7), (5, 1), (3, 3)])
def test_tiny_images_render_at_their_own_size(stub, h, w):
    label = grey(h, w, 2)
    response = stub.Render(
        pb.RenderRequest(label=as_map(label), output_format=pb.OUTPUT_FORMAT_RAW), timeout=30
    )
    assert list(response.raw.shape) == [h, w, 3]


def test_a_0x0_map_is_invalid_argument(stub):
    empty = pb.Map(raw=pb.RawArray(shape=[0, 0], dtype=pb.DTYPE_UINT8, data=b""))
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(pb.RenderRequest(label=empty), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "H, W > 0" in e.value.details()


VALID_PNG = png(grey(8, 12, 3))

png_bytes = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda cut: VALID_PNG[:cut], st.integers(0, len(VALID_PNG))),
    st.builds(
        lambda w, h, depth: crafted_png(w, h, bit_depth=depth),
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.sampled_from([1, 8, 16]),
    ),
)
raw_arrays = st.builds(
    pb.RawArray,
    shape=st.lists(st.integers(-2, 1 << 40), max_size=3) | st.lists(st.integers(0, 9), max_size=3),
    dtype=st.integers(0, 5),
    data=st.binary(max_size=300),
)
maps = st.one_of(st.none(), st.builds(pb.Map, png=png_bytes), st.builds(pb.Map, raw=raw_arrays))
styles = st.one_of(
    st.none(),
    st.builds(pb.Style, seed=st.integers(0, 2**64 - 1)),
    st.builds(pb.Style, reference_png=png_bytes),
    st.builds(
        lambda cc, ic, feats: pb.Style(
            explicit=pb.ExplicitStyle(
                class_cluster=cc,
                instance_cluster=ic,
                instance_features={k: pb.FeatureVector(values=v) for k, v in feats.items()},
            )
        ),
        st.dictionaries(
            st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1), max_size=3
        ),
        st.dictionaries(
            st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1), max_size=3
        ),
        st.dictionaries(
            st.integers(0, 2**20),
            st.lists(st.floats(allow_nan=True, width=32), max_size=4),
            max_size=2,
        ),
    ),
)


images = st.one_of(
    st.none(),
    st.builds(pb.InputImage, encoded=png_bytes),
    st.builds(pb.InputImage, raw=raw_arrays),
)


@FUZZ
@given(maps, maps, styles, images, st.integers(0, 3))
def test_random_requests_render_or_get_invalid_argument(stub, label, instance, style, image, fmt):
    request = pb.RenderRequest(
        label=label, instance=instance, style=style, image=image, output_format=fmt
    )
    try:
        response = stub.Render(request, timeout=30)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
        assert e.details()
        return
    assert response.png or response.raw.data


@FUZZ
@given(
    st.integers(1, 20),
    st.integers(1, 20),
    st.data(),
    st.dictionaries(st.integers(0, 70_000), st.lists(st.floats(width=32), max_size=4), max_size=3),
)
def test_valid_maps_with_random_explicit_styles_render_or_say_why(stub, h, w, data, features):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    label = rng.integers(0, LABEL_NC, (h, w), dtype=np.uint8)
    instance = rng.integers(0, 70_000, (h, w)).astype(np.int32)
    style = pb.Style(
        explicit=pb.ExplicitStyle(
            instance_features={k: pb.FeatureVector(values=v) for k, v in features.items()}
        )
    )
    request = pb.RenderRequest(
        label=as_map(label),
        instance=as_map(instance),
        style=style,
        output_format=pb.OUTPUT_FORMAT_RAW,
    )
    try:
        response = stub.Render(request, timeout=30)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
        return
    assert list(response.raw.shape) == [h, w, 3]


def test_memory_stays_bounded_after_the_fuzz_and_the_server_is_healthy(server, stub, memory):
    """Runs last in this module: the corpus five more times, then RSS and the peak are checked."""
    for case in CASES:  # warm every error path once
        with pytest.raises(grpc.RpcError):
            stub.Render(request_of(case), timeout=30)
    memory.reset_peak()
    before = memory.rss()
    for _ in range(5):
        for case in CASES:
            with pytest.raises(grpc.RpcError):
                stub.Render(request_of(case), timeout=30)
    # The bombs declare up to 10 GB of pixels; refused before decoding, they cost next to nothing.
    assert memory.peak() - before < 128
    assert memory.rss() - before < 32
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert_alive(stub)


kserve_tensors = st.builds(
    lambda name, datatype, shape, field, values: kserve_pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=shape,
        contents=kserve_pb.InferTensorContents(**{field: values}),
    ),
    st.sampled_from(["label", "instance", "seed", "image", ""]),
    st.sampled_from(["UINT8", "INT32", "INT64", "FP32", "BYTES", "junk"]),
    st.lists(st.integers(-1, 1 << 40), max_size=4) | st.lists(st.integers(1, 6), max_size=4),
    st.sampled_from(["uint_contents", "int_contents", "int64_contents"]),
    st.lists(st.integers(0, 2**31 - 1), max_size=40),
)  # fmt: skip


kserve_requests = st.builds(
    lambda model, tensors, raw: kserve_pb.ModelInferRequest(
        model_name=model, inputs=tensors, raw_input_contents=raw or []
    ),
    st.sampled_from(["p2phd", "other", ""]),
    st.lists(kserve_tensors, max_size=3),
    st.one_of(st.none(), st.lists(st.binary(max_size=64), max_size=3)),
)


@FUZZ
@given(kserve_requests)
def test_random_kserve_requests_render_or_get_a_client_error(server, request):
    with grpc.insecure_channel(server.target) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            response = stub.ModelInfer(request, timeout=30)
        except grpc.RpcError as e:
            client_errors = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
            assert e.code() in client_errors, (e.code(), e.details())
            assert e.details()
            return
    assert response.outputs[0].name == "image"
