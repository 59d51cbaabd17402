"""Engine caches under attack (issue 17, findings 3, 5 and 8): shape churn fills neither the
package nor the disk, a changed cached engine is rebuilt instead of run, and compiled models of
large shapes do not pile up in memory."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest

from p2phd.engine.core import compiled_cache
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.serving.client import RenderItem
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.server.conftest import make_maps


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """Every path under `directory` with its size and modification time: a write shows here."""
    return {
        str(p.relative_to(directory)): (p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in [directory, *directory.rglob("*")]
    }


def cache_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty engine cache for this test alone."""
    root = tmp_path / "cache"
    monkeypatch.setenv(compiled_cache.CACHE_ENV, str(root))
    return root


def test_shape_churn_writes_nothing_into_the_package_and_the_cache_stays_bounded(
    start_server, server_package, cache, monkeypatch
):
    """Finding 3: 20 small requests of new shapes each compiled an engine into MODEL_DIR/engines/
    and nothing was ever evicted."""
    monkeypatch.setenv(compiled_cache.MAX_MB_ENV, "1")
    before = snapshot(server_package)
    s = start_server(backend="openvino", precision="fp32")
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    for k in range(20):
        label, instance = make_maps(32, 64 + 4 * k, seed=k)
        reply = stub.Render(RenderItem(label, instance).request(), timeout=60)
        assert reply.raw.shape == [32, 64 + 4 * k, 3]
        assert cache_bytes(cache) <= 1 << 20
    assert snapshot(server_package) == before
    blobs = list(cache.rglob("*.blob"))
    assert blobs and len(blobs) < 20  # some were cached, the oldest evicted


@pytest.fixture
def package_copy(server_package, tmp_path) -> Path:
    return Path(shutil.copytree(server_package, tmp_path / "pkg"))


def test_a_changed_cached_openvino_engine_is_rebuilt_not_run(package_copy, cache, caplog):
    """Finding 5: 64 flipped bytes in a cached blob changed images by up to 96 levels, silently."""
    caplog.set_level(logging.WARNING)  # whatever level an earlier test left the handler at
    label, instance = make_maps(seed=2)
    with Renderer(package_copy, "openvino", "fp32") as r:
        expected = r.render(label, instance)
        blob = max(r.backend.engine_dir().glob("*.blob"), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(255 - b for b in data[middle : middle + 64])
    blob.write_bytes(bytes(data))
    with Renderer(package_copy, "openvino", "fp32") as r:
        np.testing.assert_array_equal(r.render(label, instance), expected)
    assert f"{blob} is not what p2phd wrote" in caplog.text
    assert compiled_cache.read_entry(blob) is not None  # rebuilt and cached again


def test_a_foreign_model_at_the_optimized_model_path_is_never_served(package_copy, cache, tmp_path):
    """Finding 5: a different ONNX placed where ONNX Runtime's optimized model is cached was
    served while every hash in the manifest matched."""
    import onnx
    from onnx import numpy_helper

    label, instance = make_maps(seed=3)
    with Renderer(package_copy, "onnxruntime", "fp32") as r:
        expected = r.render(label, instance)
        r.backend.build()
        target = r.backend.optimized_path
    foreign = onnx.load(package_copy / "generator.onnx")
    weight = foreign.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight.name))
    onnx.save(foreign, target)
    with Renderer(package_copy, "onnxruntime", "fp32") as r:
        assert r.describe()["model"] == str(package_copy / "generator.onnx")
        assert np.abs(r.render(label, instance).astype(int) - expected).max() <= 1


def test_compiled_models_of_large_shapes_are_released_to_a_byte_budget(
    server_package, cache, monkeypatch, memory
):
    """Finding 8: compiled models were bounded by count (8), so a few large shapes kept GBs."""
    monkeypatch.setenv("P2PHD_ENGINE_MEMORY_MB", "160")
    with Renderer(server_package, "openvino", "fp32") as r:
        grown = []
        for k in range(5):
            h, w = 512, 1024 + 16 * k  # ~100 MB each compiled (estimated; ~70 measured)
            before = memory.live()
            r.render(np.ones((h, w), np.uint8), np.ones((h, w), np.int32))
            grown.append(memory.live() - before)
        # Each later shape replaces its predecessor's model, leaving what oneDNN keeps per shape
        # it compiled (~29 MB here); held, the four would add about four models' bytes.
        one_model = r.backend.estimated_bytes() / len(r.backend._compiled) / 2**20
        assert sum(grown[1:]) < 2 * one_model, (grown, one_model)
        assert len(r.backend._compiled) == 1 and r.backend.estimated_bytes() <= 160 << 20


def test_onnxruntime_returns_a_large_shapes_memory_after_the_call(server_package, memory):
    """Finding 8 on ONNX Runtime: its CPU memory arena kept the largest shape's buffers."""
    from p2phd.engine.backends.onnxruntime import OnnxRuntimeBackend
    from p2phd.engine.core.package import ModelPackage

    backend = OnnxRuntimeBackend(ModelPackage(server_package), "fp32")
    channels = backend.package.manifest.input_channels
    backend.infer(np.zeros((1, channels, 32, 64), np.float32))
    baseline = memory.rss()
    memory.reset_peak()
    backend.infer(np.zeros((1, channels, 1024, 2048), np.float32))
    peak = memory.peak() - baseline
    backend.infer(np.zeros((1, channels, 32, 64), np.float32))
    kept = memory.rss() - baseline
    backend.close()
    # The arena kept 256 of 280 MB (91%). Returned, a full suite's process still measured up to
    # 50% kept (144 of 288 MB: its heap is fragmented by then), so the bound sits between.
    assert peak > 150 and kept < peak * 0.7, (peak, kept)
