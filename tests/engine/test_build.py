"""`p2phd build` and the quality report it writes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from p2phd.common.errors import ConfigError
from p2phd.engine.backends import backend_class
from p2phd.engine.backends.base import EngineOptions
from p2phd.engine.core import quality
from p2phd.engine.core.build import build_engine, parse_batch
from p2phd.engine.core.cpu_features import has_native_bf16
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.size_policy import parse_size
from p2phd.export.package_info import describe_package


def p2phd(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p2phd.engine.apps.cli", *map(str, args)],
        capture_output=True,
        text=True,
    )


def test_build_command_writes_engine_and_quality_report(tiny_package, engine_cache_dir):
    precision = "bf16" if has_native_bf16() else "fp32"
    out = p2phd(
        "build", tiny_package, "--backend", "openvino", "--precision", precision,
        "--size", "64x128", "--batch", "1:2:2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"openvino:{precision}" in out.stdout and "PSNR" in out.stdout
    # The compiled engine goes to the engine cache; only the quality report (and the lock its
    # writers take turns on) into the package.
    written = sorted(p.name for p in (tiny_package / "engines").iterdir())
    assert written == [quality.REPORT_LOCK, quality.QUALITY_FILE]
    report = json.loads((tiny_package / "engines" / "quality.json").read_text())
    entry = report[f"openvino:{precision}"]
    blobs = {p.name for p in engine_cache_dir.rglob("*.blob")}
    assert entry["engine_files"] and set(entry["engine_files"]) <= blobs
    assert entry["reference"] == "torch:fp32"
    assert entry["max_abs_err"] < (0.25 if precision == "bf16" else 1e-4)
    assert entry["identical_uint8"] or entry["psnr_db"] > 30


def test_quality_entries_merge_and_the_optimized_onnx_model_is_cached(
    tiny_package, tiny_package_source, tiny_maps
):
    first = build_engine(tiny_package, "onnxruntime", "fp32", EngineOptions(sizes=[(32, 64)]))
    assert first.files and first.files[0].is_file()
    assert not first.files[0].is_relative_to(tiny_package)  # in the engine cache
    assert first.quality["max_abs_err"] < 1e-4
    quality.write_entry(tiny_package / "engines", "openvino:bf16", {"psnr_db": 41.0})
    report = quality.read_report(tiny_package / "engines")
    assert set(report) == {"onnxruntime:fp32", "openvino:bf16"}
    assert not list((tiny_package / "engines").glob(".p2phd-tmp-*"))  # nothing half-written
    # A renderer started afterwards loads the optimized model and renders the same images.
    r = Renderer(tiny_package, "onnxruntime", "fp32")
    assert r.describe()["model"] == str(first.files[0])
    plain = Renderer(tiny_package_source, "onnxruntime", "fp32")
    assert np.abs(r.render(*tiny_maps).astype(int) - plain.render(*tiny_maps)).max() <= 1


def test_build_command_reports_bad_options_without_traceback(tiny_package):
    out = p2phd("build", tiny_package, "--backend", "openvino", "--size", "big")
    assert out.returncode == 2 and "--size 'big'" in out.stderr and "Traceback" not in out.stderr
    out = p2phd("build", tiny_package, "--backend", "openvino", "--size", "30x45")
    assert out.returncode == 2 and "multiples of 4" in out.stderr
    if backend_class("tensorrt").availability() is not None:  # no GPU or TensorRT here
        out = p2phd("build", tiny_package, "--backend", "tensorrt", "--precision", "fp16")
        assert out.returncode == 2 and "tensorrt" in out.stderr and "Traceback" not in out.stderr


def test_option_parsing():
    assert parse_batch("1:4:8") == (1, 4, 8) and parse_batch("2") == (2, 2, 2)
    assert parse_size("512x1024") == (512, 1024)
    for text, said in [("0x8", "expected HxW"), ("4x16", "at least 8x8"), ("9000x9", "past")]:
        with pytest.raises(ConfigError, match=said):
            parse_size(text, min_side=8)
    with pytest.raises(ConfigError, match="MIN <= OPT <= MAX"):
        EngineOptions(batch=parse_batch("4:2:8"))
    with pytest.raises(ConfigError):
        parse_batch("1:x:2")


def test_psnr_and_the_40_db_floor():
    a = np.zeros((1, 3, 8, 8), np.float32)
    assert quality.measure(a, a)["identical_uint8"]
    noisy = a + np.random.default_rng(0).normal(0, 0.05, a.shape).astype(np.float32)
    m = quality.measure(a, noisy)
    assert 20 < m["psnr_db"] < 40 and m["max_abs_err"] > 0.05
    ok, why = quality.allows({"openvino:bf16": m}, "openvino:bf16")
    assert not ok and "below the 40 dB floor" in why
    ok, why = quality.allows({}, "tensorrt:fp16")
    assert not ok and "no quality report" in why


@pytest.mark.skipif(not has_native_bf16(), reason="this CPU has neither AMX nor AVX512-BF16")
def test_a_quality_report_from_another_export_does_not_choose_the_reduced_precision(tiny_package):
    """A re-export leaves engines/ in place: its old report must not vouch for the new model."""
    build_engine(tiny_package, "openvino", "bf16", EngineOptions(sizes=[(32, 64)]))
    report = quality.read_report(tiny_package / "engines")
    report["openvino:bf16"] |= {"psnr_db": 99.0, "identical_uint8": False}
    (tiny_package / "engines" / "quality.json").write_text(json.dumps(report))
    assert Renderer(tiny_package, "openvino", "auto").describe()["precision"] == "bf16"
    manifest = tiny_package / "manifest.json"  # a re-export: another manifest, same engines/
    manifest.write_text(manifest.read_text().replace('"parity": {', '"parity": {"new": 0.0, '))
    d = Renderer(tiny_package, "openvino", "auto").describe()
    assert d["precision"] == "fp32" and "another export" in d["precision_reason"]


def test_info_does_not_offer_a_reduced_precision_measured_on_another_export(tiny_package):
    """`p2phd info`'s "chosen by default" column agrees with precision=auto on a stale entry."""
    entry = {"psnr_db": 99.0, "identical_uint8": False, "package": "0" * 64}
    quality.write_entry(tiny_package / "engines", "openvino:bf16", entry)
    row = next(r for r in describe_package(tiny_package).splitlines() if "openvino:bf16" in r)
    assert "no: the openvino:bf16 quality report was measured on another export" in row


def test_build_keeps_openvino_compiled_models_within_the_memory_budget(tiny_package, monkeypatch):
    """Building many shapes caches every blob but holds only what $P2PHD_ENGINE_MEMORY_MB allows."""
    monkeypatch.setenv("P2PHD_ENGINE_MEMORY_MB", "0")
    options = EngineOptions(sizes=[(32, 64), (64, 64)])
    backend = backend_class("openvino")(ModelPackage(tiny_package), "fp32", options)
    assert len(backend.build()) == 4  # batch 1 and 4 of both sizes, in the engine cache
    assert len(backend._compiled) == 1  # only the one last used is held


@pytest.mark.parametrize(("budget_mb", "largest"), [("2048", "4"), ("0", "n")])
def test_openvino_runs_the_largest_batch_static_where_memory_holds_a_third_model(
    tiny_package, monkeypatch, budget_mb, largest
):
    """Full batches (the profile's largest) run a static model, faster than the dynamic one the
    batches between share, unless the budget cannot hold batch 1, it and the dynamic one."""
    monkeypatch.setenv("P2PHD_ENGINE_MEMORY_MB", budget_mb)
    options = EngineOptions((1, 1, 4), sizes=[(32, 64)])
    backend = backend_class("openvino")(ModelPackage(tiny_package), "fp32", options)
    built = {p.name.split(".")[3] for p in backend.build()}
    assert built == {"1x32x64", f"{largest}x32x64", "nx32x64"}
    x = np.zeros((4, backend.package.manifest.input_channels, 32, 64), np.float32)
    labels = np.random.default_rng(0).integers(0, 35, (4, 1, 32, 64))
    np.put_along_axis(x, labels, 1.0, axis=1)  # a label map's input: what build compiled for
    full, part = backend.infer(x), backend.infer(x[:3])
    np.testing.assert_allclose(full[:3], part, atol=1e-5)  # the same numbers either way
    assert (4 if largest == "4" else -1, 32, 64, True) in backend._compiled
