"""`p2phd bench` end to end on a tiny package: the three outputs, the rows and their columns."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from p2phd.engine.apps.bench.harness import STAGES
from p2phd.engine.backends.onnxruntime import OnnxRuntimeBackend
from p2phd.engine.core.cpu_features import has_native_bf16


def rows(result: dict, backend: str, precision: str) -> list[dict]:
    return [r for r in result["rows"] if r["backend"] == backend and r["precision"] == precision]


def test_writes_json_markdown_and_plots(bench_run, bench_result):
    _, out = bench_run
    for name in ("latency_vs_batch.png", "throughput_vs_size.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 200 and img.height > 200
    md = (out / "bench.md").read_text()
    assert "| backend | precision | batch | size | median ms | p90 ms | p99 ms | images/s" in md
    ok = [r for r in bench_result["rows"] if r["status"] == "ok"]
    # every measured row is a line of the headline table and of the stage table
    for r in ok:
        line = f"| {r['backend']} | {r['precision']} | {r['batch']} | {r['size']} |"
        assert md.count(line) == 2, line
    machine = bench_result["machine"]
    assert machine["physical_cores"] >= 1 and "avx512_bf16" in machine["flags"]
    assert "onnxruntime" in machine["libraries"]
    # the noise check counts other processes' CPU time, never our own
    share = bench_result["other_load"]["other_cpu_share"]
    assert 0 <= share <= 1
    assert ("provisional" in bench_result) == (share > 0.10)


def test_engine_rows_have_every_measurement(bench_result, bench_shape):
    batches, (h, w) = bench_shape
    for backend in ("openvino", "onnxruntime", "torch"):
        measured = rows(bench_result, backend, "fp32")
        assert sorted(r["batch"] for r in measured) == list(batches)
        for r in measured:
            assert r["status"] == "ok" and r["size"] == f"{h}x{w}"
            lat = r["latency_ms"]
            assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"]
            assert set(r["stages_ms"]) == set(STAGES)
            assert math.isclose(r["images_per_s"], r["batch"] * 1e3 / lat["median"], rel_tol=1e-2)
            assert r["peak_rss_mib"] > 0 and r["gmacs"] > 0
            assert 0 < r["efficiency_pct"] < 100
            assert r["speedup"] > 0
            # OpenVINO computes the first convolution (7x7, 39 channels in, 4 out) from the
            # labels: table lookups, which % of peak leaves out (GMAC/s counts the model's)
            model_pct = 100 * r["achieved_gmacs_per_s"] / r["peak_gmacs_per_s"]
            if backend == "openvino":
                first = 7 * 7 * 39 * 4 * h * w * r["batch"] / 1e9
                assert math.isclose(r["table_lookup_gmacs"], first, abs_tol=1e-3)
                assert r["efficiency_pct"] < model_pct / 2  # the lookups are ~87% of its MACs
            else:
                assert "table_lookup_gmacs" not in r
                assert math.isclose(r["efficiency_pct"], model_pct, rel_tol=0.02)


def test_baseline_row_is_the_original_path_at_batch_one(bench_result):
    (base,) = rows(bench_result, "baseline", "fp32")
    assert base["status"] == "ok" and base["batch"] == 1
    assert base["speedup"] == 1.0
    assert "torch one-hot" in base["describe"]["path"]
    # every other row's speed-up is its images/s over the baseline's
    for r in bench_result["rows"]:
        if r["status"] == "ok":
            expected = r["images_per_s"] / base["images_per_s"]
            assert math.isclose(r["speedup"], expected, rel_tol=0.01, abs_tol=0.005)  # 2 decimals


def test_skipped_combinations_carry_their_reason(bench_result, bench_shape):
    for backend, precision, words in (
        ("torch", "bf16", "no bf16 mode"),
        ("openvino", "fp16", "no fp16 mode"),
        ("onnxruntime", "fp16", "CUDA"),
    ):
        skipped = rows(bench_result, backend, precision)
        assert len(skipped) == len(bench_shape[0])
        if backend == "onnxruntime" and OnnxRuntimeBackend.reduced_unsupported("fp16") is None:
            continue  # onnxruntime-gpu on a GPU: its fp16 rows run
        assert all(r["status"] == "skipped" and words in r["reason"] for r in skipped)
    trt = rows(bench_result, "tensorrt", "fp32")
    if trt[0]["status"] == "skipped":
        assert trt[0]["reason"]


def test_reduced_precision_rows_carry_quality(bench_result, bench_shape):
    bf16 = rows(bench_result, "openvino", "bf16")
    if not has_native_bf16():
        assert all(r["status"] == "skipped" and "AVX512-BF16" in r["reason"] for r in bf16)
        pytest.skip("this CPU has no native bf16")
    first = next(r for r in bf16 if r["batch"] == min(bench_shape[0]))
    q = first["quality"]
    assert q["reference"] == "torch:fp32"
    assert q["max_abs_err"] > 0  # bf16 rounds
    assert q["identical_uint8"] or q["psnr_db"] > 20
    md_psnr = "identical" if q["identical_uint8"] else f"{q['psnr_db']:.1f}"
    assert md_psnr in first_table_line(bench_result, first)


def first_table_line(result: dict, row: dict) -> str:
    from p2phd.engine.apps.bench.report import markdown

    prefix = f"| {row['backend']} | {row['precision']} | {row['batch']} | {row['size']} |"
    return next(line for line in markdown(result).splitlines() if line.startswith(prefix))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--size", "30x60"], "not a multiple of this model's 4"),
        (["--backends", "openvino,cuda"], "unknown backend 'cuda'"),
        (["--batch", "1,two"], "--batch '1,two'"),
        (["--batch", "0"], "batch sizes must be 1 to 1024"),
        (["--batch", "1,100000"], "batch sizes must be 1 to 1024"),
        (["--precision", "int4"], "unknown precision 'int4'"),
    ],
)
def test_bad_arguments_are_clear_errors(bench_package, tmp_path, capsys, args, message):
    from p2phd.engine.apps.cli import main

    assert main(["bench", str(bench_package), "-o", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_package_is_a_clear_error(tmp_path, capsys):
    from p2phd.engine.apps.cli import main

    assert main(["bench", str(tmp_path / "nowhere"), "-o", str(tmp_path / "out")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_an_image_input_package_is_refused_naming_the_pix2pix_benchmark(tmp_path, capsys):
    from p2phd.engine.apps.cli import main
    from tests.pix2pix.test_export_render import export

    _, package = export(tmp_path, "unet_128", "batch", "image-stats", False)
    assert main(["bench", str(package), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "takes images (pix2pix/CycleGAN)" in err and "benchmarks/pix2pix.py" in err
    assert not (tmp_path / "out").exists()


def test_engine_rows_time_the_renderers_input_and_check_quality_on_the_whole_one(
    bench_package, monkeypatch
):
    """Where OpenVINO reads the labels instead of the one-hot channels, the timed input leaves
    them unwritten as `p2phd render`'s does; the quality check still gets the whole input."""
    from p2phd.engine.apps.bench.harness import EnginePipeline
    from p2phd.engine.core.quality import synthetic_maps
    from p2phd.engine.core.renderer import Renderer
    from p2phd.engine.core.style import Style

    labels, instances = synthetic_maps(2, 32, 64, 35, seed=3)
    with Renderer(bench_package, "openvino", "fp32") as renderer:
        assert not renderer.backend.reads_one_hot
        pipe = EnginePipeline(renderer)
        built, dense_input = [], renderer.dense_input
        monkeypatch.setattr(
            renderer, "dense_input", lambda *a, **k: built.append(k) or dense_input(*a, **k)
        )
        x = pipe.preprocess(labels, instances)
        assert built == [{"one_hot": False}]  # as Renderer.render builds it for this backend
        x[:, :35] = 0.5  # whatever the pooled buffer held there: the backend reads the labels
        out = pipe.infer(x)
        dense, output = pipe.quality_pair(x, out)
        whole = dense_input(labels, instances, [Style(seed=0)] * 2)
        assert output is out
        assert (dense == whole).all() and (dense[:, :35].sum(axis=1) == 1).all()
        np.testing.assert_allclose(renderer.backend.infer(whole), out, atol=1e-4)
