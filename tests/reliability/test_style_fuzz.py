"""Style requests under fuzzing, on a real server with a package that has feature clusters and an
encoder: any choice of clusters, feature vectors (any length, NaN, inf) or reference photo
renders or gets INVALID_ARGUMENT with a reason; never INTERNAL."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from p2phd.engine.core.quality import synthetic_maps
from p2phd.engine.serving.server import ServerConfig
from p2phd.engine.serving.wire import renderer_pb2 as pb
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.server.conftest import ThreadedServer

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
H, W = 32, 64


@pytest.fixture(scope="module")
def stub(tiny_package_source):
    s = ThreadedServer(ServerConfig(model_dir=tiny_package_source, port=0, max_batch_size=4))
    with grpc.insecure_channel(s.target) as channel:
        yield renderer_pb2_grpc.RendererStub(channel)
    s.stop()


LABELS, INSTANCES = synthetic_maps(1, H, W, 35, seed=2)


def maps() -> dict:
    label = pb.RawArray(shape=[H, W], dtype=pb.DTYPE_UINT8, data=LABELS[0].tobytes())
    instance = pb.RawArray(shape=[H, W], dtype=pb.DTYPE_INT32, data=INSTANCES[0].tobytes())
    return {"label": pb.Map(raw=label), "instance": pb.Map(raw=instance)}


def photo_png(h: int, w: int, mode: str) -> bytes:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    a = np.random.default_rng(h * w).integers(0, 256, (h, w, channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a.squeeze(-1) if channels == 1 else a, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


ids = st.sampled_from(sorted({int(i) for i in np.unique(INSTANCES)})) | st.integers(-5, 2**40)
explicit = st.builds(
    lambda cc, ic, feats, seed: pb.ExplicitStyle(
        class_cluster=cc, instance_cluster=ic, seed=seed,
        instance_features={k: pb.FeatureVector(values=v) for k, v in feats.items()},
    ),
    st.dictionaries(st.integers(-3, 40), st.integers(-3, 8), max_size=4),
    st.dictionaries(ids, st.integers(-3, 8), max_size=3),
    st.dictionaries(ids, st.lists(st.floats(width=32), max_size=5), max_size=3),
    st.integers(0, 2**64 - 1),
)  # fmt: skip
styles = st.one_of(
    st.builds(pb.Style, explicit=explicit),
    st.builds(
        lambda h, w, mode: pb.Style(reference_png=photo_png(h, w, mode)),
        st.sampled_from([H, 1, 31]), st.sampled_from([W, 1, 65]),
        st.sampled_from(["RGB", "RGBA", "L"]),
    ),
)  # fmt: skip


@FUZZ
@given(styles)
def test_any_style_renders_or_gets_invalid_argument(stub, style):
    request = pb.RenderRequest(**maps(), style=style, output_format=pb.OUTPUT_FORMAT_RAW)
    try:
        response = stub.Render(request, timeout=30)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
        assert "style" in e.details()
        return
    assert list(response.raw.shape) == [H, W, 3]
