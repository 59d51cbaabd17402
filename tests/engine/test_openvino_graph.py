"""The OpenVINO graph rewrite (engine/backends/openvino_graph.py): narrow convolutions computed on a
space-to-depth view give the same numbers, and only where the rewrite applies."""

from __future__ import annotations

import numpy as np
import pytest

from p2phd.engine.backends.openvino import OpenVINOBackend
from p2phd.engine.backends.openvino_graph import space_to_depth_narrow_convs
from p2phd.engine.core.package import ModelPackage
from tests.conftest import REPO

ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
ops = pytest.importorskip("openvino.opset13")


def conv_model(shape, weight, strides=(1, 1)) -> ov.Model:
    x = ops.parameter(shape, np.float32)
    y = ops.convolution(x, ops.constant(weight), list(strides), [0, 0], [0, 0], [1, 1])
    return ov.Model([ops.relu(y)], [x])


def run(model: ov.Model, x: np.ndarray) -> np.ndarray:
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request().infer({0: x})[0]


def op_types(model: ov.Model) -> list[str]:
    return [op.get_type_name() for op in model.get_ordered_ops()]


@pytest.mark.parametrize("batch_dim", [2, -1])  # a static batch, and the dynamic one batch > 1 uses
@pytest.mark.parametrize(("kernel", "channels_out"), [(7, 3), (3, 4), (5, 1)])
def test_a_narrow_convolution_on_blocks_computes_the_same(kernel, channels_out, batch_dim):
    rng = np.random.default_rng(kernel)
    weight = rng.normal(0, 0.1, (channels_out, 5, kernel, kernel)).astype(np.float32)
    x = rng.normal(0, 1, (2, 5, 18, 24)).astype(np.float32)  # 18x24: even, not a multiple of 4
    shape = ov.PartialShape([batch_dim, 5, 18, 24])
    plain = run(conv_model(shape, weight), x)
    model = conv_model(shape, weight)
    assert space_to_depth_narrow_convs(model) == 1
    assert {"SpaceToDepth", "DepthToSpace"} <= set(op_types(model))
    got = run(model, x)
    assert got.shape == plain.shape == (2, channels_out, 18 - kernel + 1, 24 - kernel + 1)
    np.testing.assert_allclose(got, plain, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "weight_shape", "strides"),
    [
        ((1, 5, 17, 24), (3, 5, 7, 7), (1, 1)),  # odd height: no 2x2 blocks
        ((1, 5, 18, 24), (5, 5, 7, 7), (1, 1)),  # 4 x 5 phases fill more than one vector
        ((1, 5, 18, 24), (3, 5, 7, 7), (2, 2)),  # strided
        ((1, 5, 18, 24), (3, 5, 4, 4), (1, 1)),  # even kernel
        ((1, 5, -1, 24), (3, 5, 7, 7), (1, 1)),  # size not known yet
    ],
)
def test_other_convolutions_are_left_as_they_are(shape, weight_shape, strides):
    model = conv_model(ov.PartialShape(list(shape)), np.ones(weight_shape, np.float32), strides)
    assert space_to_depth_narrow_convs(model) == 0
    assert "SpaceToDepth" not in op_types(model)


def test_the_backend_compiles_the_default_models_last_convolution_on_blocks():
    backend = OpenVINOBackend(ModelPackage(REPO / "models" / "default"), "fp32")
    types = op_types(backend._shaped(1, 64, 128))
    assert types.count("SpaceToDepth") == 1  # the 7x7 convolution to the 3 image channels
    assert backend.cache_key().endswith("-s2d-v2")  # blobs compiled without it are not imported
