"""The benchmark on a CUDA machine: TensorRT rows timed with CUDA events, per-layer profile,
FP16 quality and efficiency against the GPU's tensor peak. Skipped where there is no GPU."""

from __future__ import annotations

import time

import pytest

from p2phd.engine.bench.gpu import CudaEventTimer, describe_gpu
from p2phd.engine.bench.harness import BenchConfig, run_bench


@pytest.mark.gpu
def test_cuda_event_timer_measures_stream_work():
    from cuda.bindings import runtime as cudart

    err, stream = cudart.cudaStreamCreate()
    assert int(err) == 0
    timer = CudaEventTimer(int(stream))
    _, ms = timer.time_ms(lambda: time.sleep(0.01))
    timer.close()
    cudart.cudaStreamDestroy(stream)
    # the end event completes ~10 ms of host time after the start event on an idle stream
    assert 5 <= ms < 1000
    assert describe_gpu()["sms"] > 0


@pytest.mark.gpu
def test_tensorrt_rows_use_cuda_events_and_layer_profile(bench_package, bench_shape):
    pytest.importorskip("tensorrt")
    config = BenchConfig(
        bench_package,
        backends=("tensorrt",),
        precisions=("fp32", "fp16"),
        batches=(1, 2),
        sizes=(bench_shape[1],),
        warmup=1,
        iters=3,
    )
    result = run_bench(config)
    assert result["machine"]["gpu"]["sms"] > 0
    for precision in ("fp32", "fp16"):
        measured = [
            r for r in result["rows"] if r["backend"] == "tensorrt" and r["precision"] == precision
        ]
        assert all(r["status"] == "ok" for r in measured), measured
        assert all(r["infer_timer"] == "cuda_event" for r in measured)
        assert all(r["peak_precision"] == "fp16" for r in measured)  # the GPU tensor peak
        first = next(r for r in measured if r["batch"] == 1)
        assert first["layer_times_ms"] and first["layer_times_ms"][0]["mean_ms"] >= 0
        assert first["quality"]["max_abs_err"] < 0.1
