"""The CPU backends compute the same function as the fp32 PyTorch reference, the choice of
backend and precision is explained, and a new backend is its module plus one registry line."""

import json

import numpy as np
import pytest

from p2phd.common.errors import BackendUnavailable, ConfigError, InputError, PackageError
from p2phd.engine.backends import BACKENDS, backend_class, choose_backend, open_backend
from p2phd.engine.backends.base import Backend
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


class ClampBackend(Backend):
    """A backend written for the tests below: its own module (this one) plus one registry
    line is all it takes. It computes tanh of the input's first three channels."""

    name = "clamp"
    precisions = ("fp32", "int8")
    variant_precisions = ("int8",)

    def load_impl(self) -> None:
        self.loaded = self.source

    def infer_impl(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x[:, :3]).astype(np.float32)


@pytest.fixture
def clamp(monkeypatch):
    """ClampBackend registered, as a new backend's registry line would."""
    monkeypatch.setitem(BACKENDS, "clamp", (__name__, "ClampBackend"))
    return ClampBackend


def test_a_new_backend_is_one_module_and_one_registry_line(clamp, tiny_package, capsys):
    from p2phd.engine.apps.bench.harness import Bench, BenchConfig
    from p2phd.engine.apps.cli import build_parser, main

    with pytest.raises(SystemExit):
        main(["build", "--help"])
    assert "clamp" in capsys.readouterr().out
    args = ["render", str(tiny_package), "--labels", "x", "-o", "out", "--backend", "clamp"]
    assert build_parser().parse_args(args).backend == "clamp"
    config = BenchConfig(tiny_package, sizes=((32, 64),), batches=(1,), warmup=0, iters=1)
    assert "clamp" in config.backends  # a CPU backend: the bench's default list
    (row,) = Bench(config, progress=lambda _: None).run_backend("clamp", "fp32")
    assert row["status"] == "ok", row
    with Renderer(tiny_package, "clamp") as r:  # the base's flow: checks, then load_impl
        d = r.describe()
        assert (d["backend"], d["precision"]) == ("clamp", "fp32")
        assert r.backend.loaded == ModelPackage(tiny_package).generator_path
        images = r.render(np.zeros((1, 32, 64), np.uint8), np.zeros((1, 32, 64), np.int32))
    assert images.shape == (1, 32, 64, 3) and images.dtype == np.uint8
    assert choose_backend("auto")[0] != "clamp"  # auto tries only the backends that join it


def test_the_base_class_checks_every_backend_the_same_way(clamp, tiny_package, monkeypatch):
    package = ModelPackage(tiny_package)
    with pytest.raises(ConfigError, match="backend clamp supports precision fp32, int8"):
        clamp(package, "bf16")
    with pytest.raises(PackageError, match="has no int8 generator variant; make one with"):
        clamp(package, "int8")  # the variant file is checked before load_impl
    backend = clamp(package, "fp32")
    with pytest.raises(InputError, match=r"clamp: expected input \[B, \d+, H, W\], got \[3, 4\]"):
        backend.infer(np.zeros((3, 4), np.float32))
    assert not backend.renders_maps  # the dense-input path, unless a backend says otherwise
    monkeypatch.setattr(clamp, "requires", {"p2phd_no_such_runtime": "pip install it"})
    with pytest.raises(BackendUnavailable, match="p2phd_no_such_runtime is not installed"):
        choose_backend("clamp")
    with pytest.raises(BackendUnavailable, match=r"\(pip install it\)"):
        clamp(package, "fp32")
