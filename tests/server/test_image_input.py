"""An image-to-image package (pix2pix family) served: p2phd.v1 Render takes an input image (PNG,
JPEG or raw), KServe v2 takes an "input_image" tensor; both return what the Renderer renders,
and label-map requests to such a model are INVALID_ARGUMENT."""

from __future__ import annotations

import io
import json

import grpc
import numpy as np
import pytest
from PIL import Image

from p2phd.engine.core.renderer import Renderer
from p2phd.engine.serving.wire import grpc_service_pb2 as kpb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc, renderer_pb2_grpc
from p2phd.engine.serving.wire import renderer_pb2 as pb


@pytest.fixture(scope="module")
def server_package(tmp_path_factory):
    """Overrides the label-map package: a tiny ResNet pix2pix generator (BatchNorm per image)."""
    import torch

    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pix.config import Pix2PixConfig
    from p2phd.train.pix2pix.networks import build_generator

    torch.manual_seed(0)
    cfg = Pix2PixConfig(netG="resnet_6blocks", norm="batch", ngf=4)
    out = tmp_path_factory.mktemp("pix2pix-server") / "model"
    return export_package(out, build_generator(cfg), cfg, fp16=False)


def photos(n: int, h: int = 24, w: int = 40) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def test_render_takes_an_input_image(start_server, server_package):
    served = start_server(max_batch_size=4)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(served.target))
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
    assert info.input_kind == "image" and info.input_nc == 3
    images = photos(2)
    jpeg = np.asarray(Image.open(io.BytesIO(encoded(images[1], "JPEG"))).convert("RGB"))
    with Renderer(server_package, "onnxruntime", "fp32") as renderer:
        want = renderer.render_images([images[0], jpeg])
    raw = pb.RawArray(shape=[24, 40, 3], dtype=pb.DTYPE_UINT8, data=images[0].tobytes())
    requests = [
        pb.RenderRequest(request_id="png", image=pb.InputImage(encoded=encoded(images[0], "PNG"))),
        pb.RenderRequest(
            request_id="raw", image=pb.InputImage(raw=raw), output_format=pb.OUTPUT_FORMAT_RAW
        ),
        pb.RenderRequest(request_id="jpg", image=pb.InputImage(encoded=encoded(images[1], "JPEG"))),
    ]
    got = {}
    for resp in stub.RenderStream(iter(requests), timeout=30):
        assert not resp.HasField("error"), resp.error
        if resp.HasField("raw"):
            got[resp.request_id] = np.frombuffer(resp.raw.data, np.uint8).reshape(24, 40, 3)
        else:
            got[resp.request_id] = np.asarray(Image.open(io.BytesIO(resp.png)))
    for key, expected in (("png", want[0]), ("raw", want[0]), ("jpg", want[1])):
        assert np.abs(got[key].astype(int) - expected).max() <= 1, key
    with pytest.raises(grpc.RpcError) as err:
        label = pb.Map(raw=pb.RawArray(shape=[24, 40], dtype=pb.DTYPE_UINT8, data=bytes(960)))
        stub.Render(pb.RenderRequest(label=label), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "takes `image`" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        bad = pb.RawArray(shape=[24, 40, 1], dtype=pb.DTYPE_UINT8, data=bytes(960))
        stub.Render(pb.RenderRequest(image=pb.InputImage(raw=bad)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "[H, W, 3]" in err.value.details()


def test_kserve_exposes_the_image_input(start_server, server_package):
    served = start_server(max_batch_size=4)
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served.target))
    meta = stub.ModelMetadata(kpb.ModelMetadataRequest(name="p2phd"), timeout=10)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input_image", "UINT8", [-1, -1, -1, 3])
    ]
    config = stub.ModelConfig(kpb.ModelConfigRequest(name="p2phd"), timeout=10).config
    assert [i.name for i in config.input] == ["input_image"]
    images = photos(3)
    tensor = kpb.ModelInferRequest.InferInputTensor
    request = kpb.ModelInferRequest(
        model_name="p2phd",
        inputs=[tensor(name="input_image", datatype="UINT8", shape=list(images.shape))],
        raw_input_contents=[images.tobytes()],
    )
    response = stub.ModelInfer(request, timeout=30)
    out = np.frombuffer(response.raw_output_contents[0], np.uint8).reshape(3, 24, 40, 3)
    with Renderer(server_package, "onnxruntime", "fp32") as renderer:
        want = renderer.render_images(images)
    assert np.abs(out.astype(int) - want).max() <= 1
    label = kpb.ModelInferRequest(
        model_name="p2phd",
        inputs=[tensor(name="label", datatype="UINT8", shape=[1, 24, 40])],
        raw_input_contents=[bytes(960)],
    )
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(label, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input_image" in err.value.details()
    assert (
        json.loads(
            renderer_pb2_grpc.RendererStub(grpc.insecure_channel(served.target))
            .GetModelInfo(pb.GetModelInfoRequest(), timeout=10)
            .describe_json
        )["input_kind"]
        == "image"
    )


def test_client_and_render_dir_through_the_server(start_server, server_package, tmp_path, capsys):
    from p2phd.engine.apps.cli import main
    from p2phd.engine.serving.client import RenderClient

    served = start_server(max_batch_size=4)
    images = photos(3)
    src = tmp_path / "in"
    src.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(src / f"img{i}.png")
    with Renderer(server_package, "onnxruntime", "fp32") as renderer:
        want = renderer.render_images(images)
    with RenderClient(served.target) as client:
        assert np.abs(client.render_image(src / "img0.png").astype(int) - want[0]).max() <= 1
    out = tmp_path / "out"
    argv = ["render", "unused", "--images", str(src), "-o", str(out), "--server", served.target]
    assert main([*argv, "--quiet", "--batch", "2"]) == 0
    assert "rendered 3" in capsys.readouterr().out
    for i in range(3):
        got = np.asarray(Image.open(out / f"img{i}.png"))
        assert np.abs(got.astype(int) - want[i]).max() <= 1
    assert main(["render", "unused", "--labels", str(src), "-o", str(out), "--server",
                 served.target, "--quiet"]) == 2  # fmt: skip
    assert "use --images" in capsys.readouterr().err
