"""An image-to-image package (pix2pix family) inside Triton: `input_image` UINT8 [B, H, W, C] in,
the Renderer's images out, as through `p2phd serve`'s KServe service."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from p2phd.engine.core.renderer import Renderer
from tests.server.test_image_input import photos, server_package  # noqa: F401  (pix2pix package)
from tests.triton.conftest import export, image_of, infer_request, kserve_stub, tritonserver


@pytest.fixture(scope="module")
def triton(server_package, tmp_path_factory):  # noqa: F811
    repo = export(
        server_package,
        tmp_path_factory.mktemp("pix2pix") / "repo",
        "--kind",
        "cpu",
        "--backend",
        "onnxruntime",
    )
    with tritonserver(repo, tmp_path_factory.mktemp("pix2pix-work")) as server:
        yield server


def test_an_image_model_renders_input_images_and_refuses_label_maps(triton, server_package):  # noqa: F811
    images = photos(2)
    stub = kserve_stub(triton.target)
    got = image_of(stub.ModelInfer(infer_request(input_image=images), timeout=60))
    with Renderer(server_package, "onnxruntime", "fp32") as renderer:
        want = renderer.render_images(images)
    assert np.abs(got.astype(np.int16) - want).max() <= 1
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(infer_request(label=np.ones((1, 24, 40), np.uint8)), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "label" in err.value.details()
