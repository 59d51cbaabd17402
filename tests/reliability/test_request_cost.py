"""No request costs more than the largest image the server takes: a thin strip that the size
policy would pad 32-fold, or a style of millions of entries for ids not in the image, is refused
with INVALID_ARGUMENT naming the limit, before the engine sees it and before anything of the
padded size is allocated. Client-given strings echoed in errors are cut, so an error is always
sendable; KServe inputs given both raw and typed are refused, as Triton does."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from p2phd.common.errors import InputError
from p2phd.engine.core.buffer_pool import BufferPool
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import MAX_STYLE_ENTRIES, Style
from p2phd.engine.serving.wire import grpc_service_pb2 as kpb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc, renderer_pb2_grpc
from p2phd.engine.serving.wire import renderer_pb2 as pb
from tests.server.conftest import make_maps

STRIP = 2 * 1024 * 1024  # a [1, 2 MiB] map: a quarter of the pixel limit, 67 M pixels padded


def raw_map(a: np.ndarray) -> pb.Map:
    dtype = pb.DTYPE_UINT8 if a.dtype == np.uint8 else pb.DTYPE_INT32
    return pb.Map(raw=pb.RawArray(shape=list(a.shape), dtype=dtype, data=a.tobytes()))


def kserve_request(label: np.ndarray, model: str = "p2phd") -> kpb.ModelInferRequest:
    tensor = kpb.ModelInferRequest.InferInputTensor
    return kpb.ModelInferRequest(
        model_name=model,
        inputs=[tensor(name="label", datatype="UINT8", shape=list(label.shape))],
        raw_input_contents=[label.tobytes()],
    )


@pytest.mark.parametrize("width", [STRIP, 262144])
def test_a_thin_strip_is_refused_before_the_engine_without_allocating(
    start_server, gated, memory, width
):
    s = start_server(gated)
    label = np.ones((1, width), np.uint8)
    channel = grpc.insecure_channel(s.target, options=[("grpc.max_send_message_length", -1)])
    stub = renderer_pb2_grpc.RendererStub(channel)
    kserve = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
    memory.reset_peak()
    before = memory.rss()
    with pytest.raises(grpc.RpcError) as e:
        instance = raw_map(label.astype(np.int32))
        stub.Render(pb.RenderRequest(label=raw_map(label), instance=instance), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "after the 'pad' size policy" in e.value.details()
    assert "per-image limit" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        kserve.ModelInfer(kserve_request(label[None]), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "per-image limit" in e.value.details()
    # Padded, one strip is 32 x width pixels of float input and activations: gigabytes.
    assert memory.peak() - before < 200, "the padded strip was allocated"
    assert gated.engine.rendered == 0
    assert stub.Render(pb.RenderRequest(label=raw_map(make_maps()[0])), timeout=30).png


def test_every_render_path_checks_the_work_after_the_size_policy(server_package, memory):
    """Batch rendering and the editor render through Renderer.render: the same bound holds."""
    with Renderer(server_package, backend="onnxruntime", precision="fp32") as r:
        memory.reset_peak()
        before = memory.rss()
        with pytest.raises(InputError, match=r"2097152x1 is computed as 2097152x\d+ = \d+ pixels"):
            r.render(np.ones((1, STRIP), np.uint8))
        assert memory.peak() - before < 100
        assert r.render(np.ones((31, 33), np.uint8)).shape == (1, 31, 33, 3)  # padding still works


def test_a_style_of_millions_of_entries_is_refused_before_it_is_copied(start_server, gated):
    s = start_server(gated)
    label, instance = make_maps()
    explicit = pb.ExplicitStyle()
    for i in range(MAX_STYLE_ENTRIES + 1):  # ids absent from the image
        explicit.instance_cluster[10**6 + i] = 0
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    request = pb.RenderRequest(
        label=raw_map(label), instance=raw_map(instance), style=pb.Style(explicit=explicit)
    )
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"instance_cluster has {MAX_STYLE_ENTRIES + 1} entries" in e.value.details()
    # A feature vector of the wrong length is refused on the message, before any copy.
    explicit = pb.ExplicitStyle()
    explicit.instance_features[1].values.extend([0.5] * 100_000)
    request.style.CopyFrom(pb.Style(explicit=explicit))
    with pytest.raises(grpc.RpcError) as e:
        stub.Render(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "has 100000 values; this model takes 0" in e.value.details()
    assert gated.engine.rendered == 0
    with pytest.raises(InputError, match="by_class has"):  # the Python API: the same bound
        Style(by_class={c: 0 for c in range(MAX_STYLE_ENTRIES + 1)})


def test_an_echoed_15_kb_model_name_still_gives_a_sendable_error(start_server):
    s = start_server()
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(s.target))
    name = "m" * 15000
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(kserve_request(make_maps()[0][None], model=name), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "is not served" in e.value.details() and len(e.value.details()) < 1200
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelMetadata(kpb.ModelMetadataRequest(name=name), timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_kserve_typed_contents_together_with_raw_contents_are_refused(start_server):
    s = start_server()
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(s.target))
    label = make_maps()[0][None]
    request = kserve_request(label)
    request.inputs[0].contents.uint_contents.extend([0] * label.size)  # a different image
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "typed contents given together with raw_input_contents" in e.value.details()


def test_shape_churn_keeps_only_a_few_input_buffers():
    """Each new shape's generator input is a fresh array; the pool hands arrays back for reuse
    but keeps only a few, not one per shape a server was ever sent."""
    pool = BufferPool()
    for side in range(16, 16 + 8 * 40, 8):  # 40 shapes, each seen once
        pool.give(pool.take((1, 4, side, side), np.float32))
    steady = pool.take((8, 4, 64, 128), np.float32)
    pool.give(steady)
    assert len(pool._free) <= pool.max_arrays
    assert pool.take((8, 4, 64, 128), np.float32) is steady  # the shape in use is still reused
