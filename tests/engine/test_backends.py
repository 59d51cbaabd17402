"""The CPU backends compute the same function as the fp32 PyTorch reference, and the choice of
backend and precision is explained."""

import json

import numpy as np
import pytest

from p2phd.common.errors import BackendUnavailable, ConfigError
from p2phd.engine.backends import backend_class, choose_backend, open_backend
from p2phd.engine.core import quality
from p2phd.engine.core.cpu_features import has_native_bf16
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style

FP32_CPU = ("onnxruntime", "openvino")


@pytest.fixture(scope="module")
def reference(tiny_package_source, tiny_maps):
    """The torch backend's float output and images on the tiny maps, and the dense input."""
    r = Renderer(tiny_package_source, "torch")
    x = r.dense_input(*tiny_maps, [Style(seed=3)] * 2)
    return x, r.backend.infer(x), r.render(*tiny_maps, style=Style(seed=3))


@pytest.mark.parametrize("backend", FP32_CPU)
def test_fp32_backend_matches_torch_reference(backend, tiny_package, tiny_maps, reference):
    x, ref_float, ref_images = reference
    r = Renderer(tiny_package, backend, "fp32")
    out = r.backend.infer(x)
    assert out.shape == ref_float.shape and out.dtype == np.float32
    assert np.abs(out - ref_float).max() / np.abs(ref_float).max() <= 1e-4
    images = r.render(*tiny_maps, style=Style(seed=3))
    assert images.shape == (2, 32, 64, 3) and images.dtype == np.uint8
    assert np.abs(images.astype(int) - ref_images).max() <= 1


@pytest.mark.skipif(not has_native_bf16(), reason="this CPU has neither AMX nor AVX512-BF16")
def test_openvino_bf16_meets_its_quality_report(tiny_package, tiny_maps, reference):
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.core.build import build_engine

    result = build_engine(tiny_package, "openvino", "bf16", EngineOptions(sizes=[(32, 64)]))
    assert result.quality["reference"] == "torch:fp32"
    r = Renderer(tiny_package, "openvino", "auto")
    ok, _ = quality.allows(quality.read_report(tiny_package / "engines"), "openvino:bf16")
    assert r.describe()["precision"] == ("bf16" if ok else "fp32")
    bf16 = Renderer(tiny_package, "openvino", "bf16")
    images = bf16.render(*tiny_maps, style=Style(seed=3))
    # On other inputs than the report's, bf16 stays within a few dB of what the report promised.
    reported = result.quality["psnr_db"] or float("inf")
    assert quality.psnr_db(reference[2], images) >= min(reported, quality.MIN_PSNR_DB) - 3


def test_low_psnr_in_report_keeps_auto_at_fp32_and_says_why(tiny_package):
    engines = tiny_package / "engines"
    engines.mkdir(exist_ok=True)
    entry = {"psnr_db": 31.5, "identical_uint8": False, "max_abs_err": 0.2}
    (engines / "quality.json").write_text(json.dumps({"openvino:bf16": entry}))
    r = Renderer(tiny_package, "openvino", "auto")
    d = r.describe()
    assert d["precision"] == "fp32"
    if has_native_bf16():
        assert "31.5 dB" in d["precision_reason"] and "below" in d["precision_reason"]
    else:
        assert "AVX512-BF16" in d["precision_reason"]


def test_auto_picks_openvino_here_and_says_why(tiny_package_source):
    if backend_class("tensorrt").availability() is None:
        pytest.skip("TensorRT runs here: test_tensorrt_backend.py checks that auto picks it")
    r = Renderer(tiny_package_source)
    d = r.describe()
    assert d["backend"] == "openvino"
    assert "tensorrt unavailable" in d["backend_reason"]
    assert d["device"] == "cpu"


def test_unavailable_and_unknown_choices_are_clear_errors(tiny_package_source):
    package = ModelPackage(tiny_package_source)
    if backend_class("tensorrt").availability() is not None:  # no GPU or TensorRT here
        with pytest.raises(BackendUnavailable, match="tensorrt"):
            open_backend(package, "tensorrt", "fp16")
    with pytest.raises(ConfigError, match="unknown backend 'tpu'"):
        choose_backend("tpu")
    with pytest.raises(ConfigError, match="supports precision fp32"):
        open_backend(package, "torch", "fp16")
    with pytest.raises(ConfigError, match="unknown precision"):
        open_backend(package, "onnxruntime", "int4")
