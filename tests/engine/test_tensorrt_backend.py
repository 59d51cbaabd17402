"""TensorRT on a GPU against ONNX Runtime on the CPU: a wrong binding, shape, stream or bucket
shows up as a mismatch here. Each test runs on the GPU (marked `gpu`) and on the TensorRT/CUDA
test doubles with the CUDA kernels routed to the CPU ones (tests/doubles), so CI runs the same
control flow without a GPU."""

import json
import logging

import numpy as np
import pytest

from p2phd.engine.backends.base import EngineOptions
from p2phd.engine.core import quality
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from p2phd.engine.serving.client import RenderClient
from p2phd.engine.serving.config import ServerConfig
from tests.doubles.fixtures import GPU_OR_DOUBLE, trt_double_fixture  # noqa: F401  (the fixture)
from tests.server.conftest import ThreadedServer

SIZES = [(32, 64), (64, 32)]
OPTIONS = EngineOptions(batch=(1, 2, 4), sizes=SIZES)
# fp32 on TensorRT may use TF32 tensor cores: close to, not bit-equal with, the CPU.
TOLERANCE = {"fp32": 1e-2, "fp16": 5e-2}


@pytest.fixture(autouse=True, params=GPU_OR_DOUBLE)
def device(request) -> str:
    if request.param == "double":
        request.getfixturevalue("trt_double").route_kernels()
    return request.param


def dense(package, batch, size):
    labels, instances = quality.synthetic_maps(batch, *size, 35, seed=batch * 100 + size[0])
    r = Renderer(package, "onnxruntime", "fp32")
    return r.dense_input(labels, instances, [Style(seed=b) for b in range(batch)])


@pytest.fixture(scope="module")
def cpu(tiny_package_source):
    return Renderer(tiny_package_source, "onnxruntime", "fp32").backend


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_matches_onnxruntime_at_batches_and_sizes(tiny_package, cpu, precision):
    from p2phd.engine.backends.tensorrt import TensorRTBackend

    trt = TensorRTBackend(ModelPackage(tiny_package), precision, OPTIONS)
    for size in SIZES:
        for batch in (1, 3, 2, 1):  # 3 runs in the 4-bucket; returning to 1 reuses its graph
            x = dense(tiny_package, batch, size)
            got, want = trt.infer(x), cpu.infer(x)
            assert got.shape == want.shape == (batch, 3, *size)
            assert np.abs(got - want).max() < TOLERANCE[precision], (precision, batch, size)
            # Each image of the batch is its own: a stale or shifted buffer would break this.
            single = trt.infer(x[-1:])
            assert np.abs(single[0] - got[-1]).max() < TOLERANCE[precision]
    assert trt.describe()["cuda_graphs"] >= 2
    trt.close()


def test_engine_is_cached_and_keyed(tiny_package):
    from p2phd.engine.backends.tensorrt import TensorRTBackend

    package = ModelPackage(tiny_package)
    first = TensorRTBackend(package, "fp32", OPTIONS)
    plan = first.build()[0]
    built = plan.stat().st_ino  # a rebuild renames a new file into place
    first.close()
    again = TensorRTBackend(package, "fp32", None)  # finds the built profile by its key
    assert again.profile == first.profile and plan.stat().st_ino == built
    other = TensorRTBackend(package, "fp32", EngineOptions(batch=(1, 1, 2), sizes=[(32, 64)]))
    assert other.build()[0] != plan  # another profile is another engine
    assert first.build()[2].is_file()  # the timing cache persisted


def test_outside_the_profile_is_an_input_error(tiny_package):
    from p2phd.common.errors import InputError
    from p2phd.engine.backends.tensorrt import TensorRTBackend

    trt = TensorRTBackend(ModelPackage(tiny_package), "fp32", OPTIONS)
    x = np.zeros((5, 39, 32, 64), np.float32)
    with pytest.raises(InputError, match="outside the engine's profile"):
        trt.infer(x)


def test_auto_picks_tensorrt_on_a_gpu_and_fp16_only_when_measured(tiny_package):
    from p2phd.engine.core.build import build_engine

    assert Renderer(tiny_package).describe()["backend"] == "tensorrt"
    result = build_engine(tiny_package, "tensorrt", "fp16", OPTIONS)
    ok, _ = quality.allows(quality.read_report(tiny_package / "engines"), "tensorrt:fp16")
    d = Renderer(tiny_package, options=OPTIONS).describe()
    assert d["precision"] == ("fp16" if ok else "fp32"), result.quality


def test_cuda_preprocessing_renders_what_the_host_path_renders(tiny_package, tiny_maps):
    from p2phd.engine.kernels import to_uint8_rgb

    labels, instances = tiny_maps
    r = Renderer(tiny_package, "tensorrt", "fp32", options=OPTIONS)
    assert r.describe()["preprocessing"] == "cuda"
    device = r.render(labels, instances, Style(seed=4))
    host = to_uint8_rgb(r.backend.infer(r.dense_input(labels, instances, [Style(seed=4)] * 2)))
    assert np.array_equal(device, host)  # same input written on the GPU as on the CPU
    cpu = Renderer(tiny_package, "onnxruntime", "fp32")
    assert np.abs(device.astype(int) - cpu.render(labels, instances, Style(seed=4))).max() <= 2
    odd = r.render(labels[:, :30, :45], instances[:, :30, :45])  # padded to 32x48 on the way
    assert odd.shape == (2, 30, 45, 3)


def test_a_batch_above_the_engines_profile_is_rendered_in_calls_it_takes(tiny_package, caplog):
    # A server's --max-batch (default 8) or `p2phd render --batch` may exceed the profile an
    # engine was built for (here max 4): the renderer splits, each image still its own.
    labels, instances = quality.synthetic_maps(6, 32, 64, 35, seed=9)
    styles = [Style(seed=s) for s in range(6)]
    r = Renderer(tiny_package, "tensorrt", "fp32", options=OPTIONS)
    assert r.backend.max_batch == 4
    got = r.render(labels, instances, styles)
    want = Renderer(tiny_package, "onnxruntime", "fp32").render(labels, instances, styles)
    assert got.shape == (6, 32, 64, 3)
    assert np.abs(got.astype(int) - want).max() <= 2
    r.close()

    # A server batching up to 8 on it (the engine built last: 1:2:4) says so when it starts.
    config = ServerConfig(model_dir=tiny_package, backend="tensorrt", precision="fp32", port=0)
    with caplog.at_level(logging.WARNING, logger="p2phd.engine.serving.server"):
        server = ThreadedServer(config)
    client = RenderClient(server.target)
    try:
        assert json.loads(client.model_info().describe_json)["max_batch"] == 4
        assert "--max-batch 8 is above the engine's largest batch, 4" in caplog.text
        assert client.render(labels[0], instances[0]).shape == (32, 64, 3)
    finally:
        client.close()
        server.stop()
