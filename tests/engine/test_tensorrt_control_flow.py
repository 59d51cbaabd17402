"""The TensorRT backend's control flow on the TensorRT/CUDA test doubles (no GPU needed):
builds and caches, buffers, per-shape contexts and CUDA graphs, a capture that fails, I/O
checks, close under load and the layer profiler. Outputs are checked against ONNX Runtime on
the CPU: the double runs the same ONNX graph, so any binding, shape or buffer mix-up shows."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from p2phd.common.errors import PackageError
from p2phd.engine.backends.base import EngineOptions
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from tests.doubles.fixtures import trt_double_fixture  # noqa: F401  (the fixture)

OPTIONS = EngineOptions(batch=(1, 2, 4), sizes=[(32, 64), (64, 32)])


def backend(package, precision="fp32", options=OPTIONS):
    from p2phd.engine.backends.tensorrt import TensorRTBackend

    return TensorRTBackend(ModelPackage(package), precision, options)


def dense(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (batch, 39, *size)).astype(np.float32)


@pytest.fixture(scope="module")
def cpu(tiny_package_source):
    return Renderer(tiny_package_source, "onnxruntime", "fp32").backend


def test_mixed_sizes_and_batches_match_onnxruntime_without_reallocating(
    trt_double, tiny_package, cpu
):
    trt = backend(tiny_package)
    allocations, seed = None, 0
    for size in [(32, 64), (64, 32), (32, 64), (64, 32)]:
        for batch in (2, 1, 2, 3):  # the 2-bucket again after the 1-bucket; 3 runs in the 4
            seed += 1
            x = dense(batch, size, seed)
            np.testing.assert_allclose(trt.infer(x), cpu.infer(x), atol=1e-4)
            if allocations is None:
                allocations = trt_double.cuda.calls["cudaMalloc"]
    # buffers for the profile's largest batch and size, once: a size change frees nothing
    assert trt_double.cuda.calls["cudaMalloc"] == allocations
    assert trt_double.cuda.calls["cudaFree"] == 0
    # one context and graph per (bucket, H, W), each captured once and replayed since
    assert trt.describe()["cuda_graphs"] == 6 == trt_double.cuda.calls["cudaStreamBeginCapture"]
    assert trt_double.trt.contexts_created == 6
    trt.close()
    assert trt_double.cuda.state.live["graph_exec"] == 0 and trt_double.cuda.device_allocated() == 0


def test_a_shape_whose_capture_fails_runs_plainly(trt_double, tiny_package, cpu):
    trt_double.trt.fail_capture = True
    trt = backend(tiny_package)
    for _ in range(2):
        for batch in (1, 2):
            x = dense(batch, (32, 64))
            np.testing.assert_allclose(trt.infer(x), cpu.infer(x), atol=1e-4)
    d = trt.describe()
    assert d["cuda_graphs"] == 0 and d["plain_shapes"] == 2
    # each shape tried to capture once; no partial graph was kept
    assert trt_double.cuda.calls["cudaStreamBeginCapture"] == 2
    assert trt_double.cuda.calls["cudaStreamEndCapture"] == 2
    assert trt_double.cuda.state.live["graph"] == 0 == trt_double.cuda.state.live["graph_exec"]


def test_an_enqueue_that_raises_under_capture_ends_it_and_leaves_no_graph(
    trt_double, tiny_package, cpu, monkeypatch
):
    from tests.doubles.tensorrt import IExecutionContext

    plain = IExecutionContext.execute_async_v3

    def raising(context, stream):
        if trt_double.cuda.stream(stream).capturing:
            trt_double.cuda.stream(stream).nodes.append("partial")
            raise RuntimeError("enqueue raised under capture")
        return plain(context, stream)

    monkeypatch.setattr(IExecutionContext, "execute_async_v3", raising)
    trt = backend(tiny_package)
    with pytest.raises(RuntimeError, match="under capture"):
        trt.infer(dense(1, (32, 64)))
    assert trt_double.cuda.state.live["graph"] == 0 == trt_double.cuda.state.live["graph_exec"]
    monkeypatch.setattr(IExecutionContext, "execute_async_v3", plain)
    x = dense(1, (32, 64))  # the stream is not left capturing: the next call runs
    np.testing.assert_allclose(trt.infer(x), cpu.infer(x), atol=1e-4)
    trt.close()


def test_a_failed_buffer_allocation_leaves_nothing_half_allocated(
    trt_double, tiny_package, cpu, monkeypatch
):
    from tests.doubles.cudart import cudaError_t

    trt = backend(tiny_package)
    cuda = trt_double.cuda
    allocate, calls = cuda.cudaMallocHost, []

    def third_fails(size):
        calls.append(size)
        if len(calls) == 3:
            return (cudaError_t.cudaErrorMemoryAllocation, None)
        return allocate(size)

    monkeypatch.setattr(cuda, "cudaMallocHost", third_fails)
    x = dense(1, (32, 64))
    with pytest.raises(RuntimeError, match="cudaErrorMemoryAllocation"):
        trt.infer(x)
    monkeypatch.setattr(cuda, "cudaMallocHost", allocate)
    np.testing.assert_allclose(trt.infer(x), cpu.infer(x), atol=1e-4)  # all allocated anew
    trt.close()
    assert cuda.device_allocated() == 0


def test_contexts_and_graphs_are_bounded(trt_double, tiny_package, cpu, monkeypatch):
    from p2phd.engine.backends import tensorrt

    monkeypatch.setattr(tensorrt, "MAX_SHAPES", 2)
    trt = backend(tiny_package)
    for batch, size in [(1, (32, 64)), (2, (32, 64)), (1, (64, 32)), (1, (32, 64))]:
        x = dense(batch, size)
        np.testing.assert_allclose(trt.infer(x), cpu.infer(x), atol=1e-4)
        assert trt_double.cuda.state.live["graph_exec"] <= 2
    # the least recently used shape went and came back: captured again
    assert trt_double.cuda.calls["cudaStreamBeginCapture"] == 4


def test_input_is_converted_to_the_engines_float32(trt_double, tiny_package, cpu):
    trt = backend(tiny_package)
    x = dense(4, (64, 64)).astype(np.float64)  # the profile's largest batch and size
    np.testing.assert_allclose(trt.infer(x), cpu.infer(x.astype(np.float32)), atol=1e-4)
    assert not trt_double.cuda.faults


@pytest.mark.parametrize(
    ("knob", "value", "words"),
    [
        ("tensor_formats", "CHW32", "is FLOAT in CHW32 format"),
        ("tensor_dtypes", "INT8", "is INT8 in LINEAR format"),
    ],
)
def test_engine_io_other_than_float_linear_is_refused(trt_double, tiny_package, knob, value, words):
    t = trt_double.trt
    enum = t.TensorFormat if knob == "tensor_formats" else t.DataType
    getattr(t, knob)["image"] = enum[value]
    with pytest.raises(PackageError, match=f"tensor 'image' {words}.*needs FLOAT"):
        backend(tiny_package)


@pytest.mark.parametrize("work", ["infer", "layer profile"])
def test_close_waits_for_the_running_batch(trt_double, tiny_package, cpu, work):
    trt = backend(tiny_package)
    x = dense(2, (32, 64))
    closer = threading.Thread(target=trt.close)
    closed_during_run = []

    def close_while_running():
        trt_double.trt.before_run = None
        closer.start()
        closer.join(timeout=0.5)
        closed_during_run.append(not closer.is_alive())

    trt_double.trt.before_run = close_while_running
    if work == "infer":
        np.testing.assert_allclose(trt.infer(x), cpu.infer(x), atol=1e-4)
    else:
        rows = trt.layer_times(x, runs=1)  # profiled under the same lock
        assert rows and all(r["mean_ms"] > 0 for r in rows)
    closer.join(timeout=10)
    assert closed_during_run == [False] and not closer.is_alive()
    assert not trt_double.cuda.faults and trt_double.cuda.device_allocated() == 0


def test_layer_profiler_reports_every_layer(trt_double, tiny_package):
    trt = backend(tiny_package)
    x = dense(2, (32, 64))
    trt.infer(x)  # a captured graph exists: the profiler must not disturb it
    rows = trt.layer_times(x, runs=3)
    assert len(rows) == trt.engine.num_layers and all(r["mean_ms"] > 0 for r in rows)
    assert trt.describe()["cuda_graphs"] == 1


def test_engine_is_built_once_per_key_and_found_again(trt_double, tiny_package):
    first = backend(tiny_package)
    plan, sidecar, timing = first.build()
    assert plan.is_file() and sidecar.is_file() and timing.is_file()
    again = backend(tiny_package, options=None)  # finds the built profile by its key
    assert again.profile == first.profile and trt_double.trt.builds == 1
    other = backend(tiny_package, options=EngineOptions(batch=(1, 1, 2), sizes=[(32, 64)]))
    assert other.build()[0] != plan and trt_double.trt.builds == 2
    assert trt_double.trt.timing_cache_hits > 0  # the second build reused the first's timings


def test_no_options_reuse_the_engine_built_last(trt_double, tiny_package, tmp_path, monkeypatch):
    a = EngineOptions(batch=(1, 1, 2), sizes=[(32, 64)])
    b = EngineOptions(batch=(1, 2, 4), sizes=[(64, 32)])
    for i, order in enumerate(((a, b), (b, a))):  # whatever order their key hashes sort in
        monkeypatch.setenv("P2PHD_CACHE", str(tmp_path / f"cache{i}"))
        built = [backend(tiny_package, options=o).profile for o in order]
        assert backend(tiny_package, options=None).profile == built[-1]


def test_timing_cache_is_kept_per_cuda_runtime(trt_double, tiny_package):
    first = backend(tiny_package).build()[2]
    trt_double.cuda.runtime_version = 12040
    other = backend(tiny_package).build()
    assert other[2] != first and first.is_file() and other[2].is_file()
    assert trt_double.trt.builds == 2  # and the engine itself is rebuilt for that runtime


def test_changed_external_weights_rebuild_the_engine(trt_double, tiny_package_source, tmp_path):
    import onnx
    import torch

    from p2phd.engine.core.package import write_manifest
    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pixhd.networks import build_generator
    from tests.engine.conftest import tiny_config

    def external(package):
        """The package with its generator's weights in generator.onnx.data."""
        manifest = ModelPackage(package).manifest
        model = onnx.load(str(package / "generator.onnx"))
        onnx.save_model(
            model,
            str(package / "generator.onnx"),
            save_as_external_data=True,
            location="generator.onnx.data",
            size_threshold=1024,
        )
        write_manifest(package, manifest)
        return package

    old = external(shutil.copytree(tiny_package_source, tmp_path / "old"))
    torch.manual_seed(1)
    new = export_package(
        tmp_path / "new", build_generator(tiny_config()), tiny_config(), fp16=False
    )
    new = external(new)
    x = dense(1, (32, 64))
    sidecar = backend(old).build()[1]
    data_hash = ModelPackage(old).manifest.files["generator.onnx.data"]
    assert data_hash in sidecar.read_text()  # the engine's key names its weights
    # a re-export with other weights over the package that has engines
    for name in ("generator.onnx", "generator.onnx.data", "manifest.json"):
        shutil.copy(new / name, old / name)
    want = Renderer(new, "onnxruntime", "fp32").backend.infer(x)
    np.testing.assert_allclose(backend(old).infer(x), want, atol=1e-4)
    assert trt_double.trt.builds == 2
