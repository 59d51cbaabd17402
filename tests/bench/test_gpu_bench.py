"""The benchmark on a CUDA machine: TensorRT rows timed with CUDA events, per-layer profile,
FP16 quality and efficiency against the GPU's tensor peak. The harness test also runs on the
TensorRT/CUDA test doubles, so its control flow is exercised where there is no GPU."""

from __future__ import annotations

import pytest

from p2phd.engine.apps.bench.gpu import CudaEventTimer, describe_gpu
from p2phd.engine.apps.bench.harness import BenchConfig, run_bench
from tests.doubles.fixtures import GPU_OR_DOUBLE, trt_double_fixture  # noqa: F401  (the fixture)


@pytest.mark.gpu
def test_cuda_event_timer_measures_stream_work():
    from p2phd.engine.core.cuda_runtime import check, runtime

    cudart = runtime()
    stream = check(cudart.cudaStreamCreate())
    n = 256 << 20
    src, dst = check(cudart.cudaMalloc(n)), check(cudart.cudaMalloc(n))
    timer = CudaEventTimer(int(stream))
    timer.record_start()
    for _ in range(4):
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
        check(cudart.cudaMemcpyAsync(dst, src, n, kind, stream))
    timer.record_end()
    ms = timer.elapsed_ms()
    timer.close()
    for ptr in (src, dst):
        cudart.cudaFree(ptr)
    cudart.cudaStreamDestroy(stream)
    # 1 GiB of device-to-device copies: above zero, far below a second on any recent GPU
    assert 0.01 < ms < 1000
    assert describe_gpu()["sms"] > 0


@pytest.mark.parametrize("device", GPU_OR_DOUBLE)
def test_tensorrt_rows_use_cuda_events_and_layer_profile(
    bench_package, bench_shape, request, device
):
    """On the GPU, or on the TensorRT/CUDA test doubles (the harness's control flow in CI)."""
    if device == "double":
        request.getfixturevalue("trt_double")
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
        assert len(measured) == 2 and all(r["status"] == "ok" for r in measured), measured
        assert all(("test_double" in r) == (device == "double") for r in measured)
        assert all(r["infer_timer"] == "cuda_event" for r in measured)
        assert all(r["peak_precision"] == "fp16" for r in measured)  # the GPU tensor peak
        first = next(r for r in measured if r["batch"] == 1)
        assert first["layer_times_ms"] and first["layer_times_ms"][0]["mean_ms"] >= 0
        assert first["quality"]["max_abs_err"] < 0.1
