"""TensorRT plans in the engine cache (issue 17 finding 5), on the TensorRT/CUDA test doubles: a
changed plan or one copied from another package is rebuilt, never deserialized, and TensorRT's
writes keep the cache within its byte bound. The double's plan holds the ONNX graph it runs, so
a plan that was run anyway shows as wrong images."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from p2phd.engine.backends.base import EngineOptions
from p2phd.engine.core import compiled_cache
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from p2phd.export.package_writer import export_package
from p2phd.train.pix2pixhd.networks import build_generator
from tests.doubles.fixtures import trt_double_fixture  # noqa: F401  (the fixture)
from tests.engine.conftest import tiny_config

OPTIONS = EngineOptions(batch=(1, 2, 2), sizes=[(32, 64)])


def render(package, maps, backend="tensorrt"):
    r = Renderer(package, backend, "fp32", options=OPTIONS)
    return r.render(*maps, Style(seed=3)), r.backend


def flip(path, offsets):
    data = bytearray(path.read_bytes())
    for i in offsets:
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_changed_plan_is_rebuilt_and_renders_the_same_images(trt_double, tiny_package, tiny_maps):
    want, trt = render(tiny_package, tiny_maps)
    plan = trt.build()[0]
    assert trt_double.trt.builds == 1
    size = plan.stat().st_size
    flip(plan, range(size // 2, size // 2 + 64))  # 64 bytes in the middle of the engine
    got, trt = render(tiny_package, tiny_maps)
    assert trt_double.trt.builds == 2 and np.array_equal(got, want)
    assert compiled_cache.read_entry(plan) is not None  # the rebuilt plan replaced the changed one
    render(tiny_package, tiny_maps)
    assert trt_double.trt.builds == 2  # and is used from then on


def test_a_plan_copied_from_another_package_is_not_used(
    trt_double, tiny_package, tiny_maps, tmp_path
):
    torch.manual_seed(1)
    other = export_package(tmp_path / "other", build_generator(tiny_config()), tiny_config())
    _, theirs = render(other, tiny_maps)
    _, ours = render(tiny_package, tiny_maps)
    ours_plan, theirs_plan = ours.build()[0], theirs.build()[0]
    assert ours_plan.parent != theirs_plan.parent
    ours_plan.write_bytes(theirs_plan.read_bytes())  # a valid entry, in the wrong place
    got, _ = render(tiny_package, tiny_maps)
    assert trt_double.trt.builds == 3  # ours rebuilt instead of loading theirs
    want, _ = render(tiny_package, tiny_maps, backend="onnxruntime")
    assert np.abs(got.astype(int) - want).max() <= 1


def test_tensorrt_writes_are_verified_entries_within_the_byte_bound(
    trt_double, tiny_package, tiny_maps, monkeypatch
):
    monkeypatch.setenv(compiled_cache.MAX_MB_ENV, "1")
    old = compiled_cache.backend_dir("another-package", "openvino-cpu") / "model.blob"
    compiled_cache.write_entry(old, b"\0" * (1000 << 10))
    os.utime(old, (1, 1))  # least recently used
    _, trt = render(tiny_package, tiny_maps)
    written = trt.build()
    assert len(written) == 3  # plan, profile, timing cache
    assert all(compiled_cache.read_entry(p) is not None for p in written)
    assert not old.exists()  # TensorRT's writes evicted the oldest entry to fit the bound
    root = compiled_cache.cache_root()
    assert sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) <= 1 << 20


def test_a_changed_timing_cache_is_not_fed_to_the_builder(trt_double, tiny_package, tiny_maps):
    _, trt = render(tiny_package, tiny_maps)
    timing = trt.build()[2]
    flip(timing, [timing.stat().st_size - 2])
    Renderer(tiny_package, "tensorrt", "fp32", options=EngineOptions(batch=(1, 1, 1)))
    assert trt_double.trt.builds == 2 and trt_double.trt.timing_cache_hits == 0
    assert compiled_cache.read_entry(timing) is not None  # a new one was written


def test_without_a_usable_cache_the_engine_is_built_and_run(
    trt_double, tiny_package, tiny_maps, tmp_path, monkeypatch, caplog
):
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    monkeypatch.setenv(compiled_cache.CACHE_ENV, str(blocker / "cache"))
    caplog.set_level(logging.WARNING)  # whatever level an earlier test left the handler at
    got, trt = render(tiny_package, tiny_maps)
    assert (
        "tensorrt: engine cache" in caplog.text
        and "going on without a cache" in caplog.text
        and trt.build() == []
    )
    want, _ = render(tiny_package, tiny_maps, backend="onnxruntime")
    assert np.abs(got.astype(int) - want).max() <= 1
