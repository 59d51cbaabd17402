"""`p2phd bench`'s TensorRT rows on the TensorRT/CUDA test doubles: the rows, the CUDA-event
timing of the infer stage, the layer profile and the GPU preprocessing path run in CI. The
numbers are the double's, so the rows say so; only the control flow is under test here."""

from __future__ import annotations

import json

import pytest

from p2phd.engine.apps.bench.gpu import Nvtx
from p2phd.engine.apps.bench.harness import EnginePipeline, synthetic_pngs, time_pipeline
from p2phd.engine.core.renderer import Renderer
from tests.doubles.fixtures import trt_double_fixture  # noqa: F401  (the fixture)


def test_p2phd_bench_writes_tensorrt_rows_labelled_as_the_double(
    trt_double, bench_package, bench_shape, tmp_path
):
    from p2phd.engine.apps.cli import main

    batches, (h, w) = bench_shape
    out = tmp_path / "bench"
    argv = ["bench", str(bench_package), "--backends", "tensorrt", "--precision", "fp16"]
    argv += ["--batch", ",".join(map(str, batches)), "--size", f"{h}x{w}", "--no-baseline"]
    assert main([*argv, "--warmup", "1", "--iters", "2", "-o", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text())
    assert result["machine"]["gpu"]["test_double"] is True
    rows = result["rows"]
    assert len(rows) == len(batches) and all(r["status"] == "ok" for r in rows), rows
    assert all("test double" in r["test_double"] and r["efficiency_pct"] is None for r in rows)
    assert all(r["layer_times_ms"] for r in rows if r["batch"] == min(batches))
    md = (out / "bench.md").read_text()
    assert "GPU p2phd test double (no GPU)" in md and "| tensorrt | fp16 |" in md


@pytest.fixture
def pipeline(trt_double, bench_package):
    from p2phd.engine.backends.base import EngineOptions

    options = EngineOptions((1, 1, 2), [(32, 64)])
    renderer = Renderer(bench_package, "tensorrt", "fp32", "reject", options=options)
    yield EnginePipeline(renderer)
    renderer.close()


def test_infer_stage_is_the_device_time_of_the_engine(trt_double, pipeline, monkeypatch):
    from p2phd.engine.backends import tensorrt

    host = tensorrt._Buffer.host

    def slow_host(self, dtype, shape):  # host staging that takes 50 ms (virtual time)
        trt_double.cuda.advance_host(50.0)
        return host(self, dtype, shape)

    monkeypatch.setattr(tensorrt._Buffer, "host", slow_host)
    pngs = synthetic_pngs(2, 32, 64, 35, seed=1)
    t = time_pipeline(pipeline, pngs, 35, warmup=1, iters=3, nvtx=Nvtx(enabled=False))
    assert t.infer_timer == "cuda_event"
    engine_ms = trt_double.cuda.engine_ms
    # the engine run plus two small copies; none of the 100 ms of host staging around them
    assert all(engine_ms <= ms < engine_ms + 1.0 for ms in t.stages["infer"]), t.stages["infer"]


def test_bench_renders_from_maps_where_the_backend_does(trt_double, bench_package):
    from p2phd.engine.backends.base import EngineOptions

    trt_double.route_kernels()  # the CUDA kernels' API on the double: render_maps is used
    options = EngineOptions((1, 1, 2), [(32, 64)])
    with Renderer(bench_package, "tensorrt", "fp32", "reject", options=options) as renderer:
        pipe = EnginePipeline(renderer)
        pngs = synthetic_pngs(2, 32, 64, 35, seed=1)
        t = time_pipeline(pipe, pngs, 35, warmup=0, iters=2, nvtx=Nvtx(enabled=False))
    ran = trt_double.cuda.ran
    # each timed run assembled the input and converted the output on the device; the infer
    # stage is their device time with the engine's
    assert ran["assemble_input"] == ran["to_uint8_rgb"] == 2
    assert all(ms >= trt_double.cuda.engine_ms for ms in t.stages["infer"])
    assert t.dense.shape == (2, 39, 32, 64) and t.output.shape == (2, 3, 32, 64)


def test_a_failing_layer_profile_fails_only_its_row(trt_double, bench_package, monkeypatch):
    from p2phd.engine.apps.bench import harness
    from p2phd.engine.backends.tensorrt import TensorRTBackend

    def broken(backend, x, runs=5):
        raise RuntimeError("profiler broke")

    monkeypatch.setattr(TensorRTBackend, "layer_times", broken)
    config = harness.BenchConfig(
        bench_package, ("tensorrt",), ("fp32",), (1, 2), ((32, 64),), 0, 1, baseline=False
    )
    rows = harness.run_bench(config)["rows"]
    assert [(r["batch"], r["status"]) for r in rows] == [(1, "failed"), (2, "ok")]
    assert "profiler broke" in rows[0]["reason"]
