"""The engine cache (issue 18): read-only and shared packages. Engines go to a cache outside the
package, keyed by its content; nothing is written into the package at render or serve time;
several processes fill one cache at once; the cache stays within its byte bound."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from p2phd.common.atomic import TMP_PREFIX
from p2phd.engine.core import compiled_cache
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.serving.client import RenderItem, image_of
from p2phd.engine.serving.server import ServerConfig
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.reliability.test_compiled_cache import snapshot
from tests.server.conftest import ThreadedServer, make_maps


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(compiled_cache.CACHE_ENV, str(root))
    return root


@pytest.fixture
def read_only_package(tiny_package_source, tmp_path):
    """A copy of the tiny package with every write permission removed. Tests run as root in CI,
    where permissions do not stop writes, so tests compare `snapshot`s as well."""
    package = Path(shutil.copytree(tiny_package_source, tmp_path / "ro" / "tiny"))
    for p in [*package.rglob("*"), package]:
        p.chmod(p.stat().st_mode & ~0o222)
    yield package
    for p in [package, *package.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_rendering_and_serving_a_read_only_package_writes_nothing_into_it(
    read_only_package, cache, backend
):
    before = snapshot(read_only_package)
    label, instance = make_maps(seed=1)
    with Renderer(read_only_package, backend, "fp32") as r:
        expected = r.render(label, instance)
    config = ServerConfig(read_only_package, port=0, metrics_port=0, backend=backend)
    server = ThreadedServer(config)
    try:
        stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(server.target))
        reply = stub.Render(RenderItem(label, instance).request(), timeout=60)
    finally:
        server.stop()
    assert image_of(reply).tobytes() == expected[0].tobytes()
    assert snapshot(read_only_package) == before
    if backend == "openvino":  # its compiled engines went to the cache instead
        assert list(cache.rglob("*.blob"))


RENDER = """
import hashlib, sys
from p2phd.engine.core.quality import synthetic_maps
from p2phd.engine.core.renderer import Renderer
digest = hashlib.sha256()
with Renderer(sys.argv[1], "openvino", "fp32") as r:
    for width in (64, 96, 128):
        digest.update(r.render(*synthetic_maps(1, 32, width, 35)).tobytes())
print(digest.hexdigest())
"""


def test_two_processes_fill_one_cache_from_one_package_at_once(read_only_package, tmp_path):
    cache = tmp_path / "shared-cache"
    env = {**os.environ, compiled_cache.CACHE_ENV: str(cache)}
    before = snapshot(read_only_package)
    procs = [
        subprocess.Popen([sys.executable, "-c", RENDER, str(read_only_package)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    assert results[0][0] == results[1][0]  # the same images from both
    blobs = sorted(cache.rglob("*.blob"))
    assert len(blobs) == 3 and all(compiled_cache.read_entry(b) is not None for b in blobs)
    assert not list(cache.rglob(f"{TMP_PREFIX}*"))  # nothing half-written left behind
    assert snapshot(read_only_package) == before
    # A third process starts from the cache and renders the same images.
    third = subprocess.run([sys.executable, "-c", RENDER, str(read_only_package)], env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert third.stdout == results[0][0]


def test_the_cache_is_keyed_by_package_content_not_location(tiny_package_source, tmp_path, cache):
    copy = Path(shutil.copytree(tiny_package_source, tmp_path / "copy"))
    dirs = []
    for package in (tiny_package_source, copy):
        with Renderer(package, "openvino", "fp32") as r:
            dirs.append(r.backend.engine_dir())
    assert dirs[0] == dirs[1] and dirs[0].is_relative_to(cache)
    manifest = copy / "manifest.json"
    manifest.write_text(
        manifest.read_text().replace('"exporter_version": "', '"exporter_version": "x')
    )
    with Renderer(copy, "openvino", "fp32") as r:
        assert r.backend.engine_dir() != dirs[0]  # another package: other entries


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(compiled_cache.CACHE_ENV, str(tmp_path / "a"))
    assert compiled_cache.cache_root() == tmp_path / "a"
    monkeypatch.delenv(compiled_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled_cache.cache_root() == tmp_path / "xdg" / "p2phd"


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_eviction_keeps_the_most_recently_used_within_the_byte_bound(cache, monkeypatch):
    monkeypatch.setenv(compiled_cache.MAX_MB_ENV, "1")
    folder = compiled_cache.backend_dir("pkg", "backend-1.0-cpu")
    payload = bytes(300 << 10)
    paths = [folder / f"e{i}.bin" for i in range(3)]
    for age, path in zip((300, 200, 100), paths, strict=True):
        assert compiled_cache.write_entry(path, payload)
        _age(path, age)
    assert compiled_cache.read_entry(paths[0]) == payload  # the oldest is now the most recent
    stale, fresh = folder / f"{TMP_PREFIX}stale", folder / f"{TMP_PREFIX}fresh"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    _age(stale, compiled_cache.STALE_TEMPORARY_S + 1)
    compiled_cache.write_entry(folder / "e3.bin", payload)  # 4 x 300 KiB > 1 MiB: one must go
    assert sorted(p.name for p in folder.iterdir()) == [f"{TMP_PREFIX}fresh", "e0.bin", "e2.bin",
                                                        "e3.bin"]  # fmt: skip
    total = sum(p.stat().st_size for p in folder.iterdir() if not p.name.startswith(TMP_PREFIX))
    assert total <= 1 << 20


def test_an_entry_without_its_hash_or_with_another_is_not_read(cache):
    path = compiled_cache.backend_dir("pkg", "b") / "entry.bin"
    compiled_cache.write_entry(path, b"engine bytes")
    assert compiled_cache.read_entry(path) == b"engine bytes"
    data = path.read_bytes()
    path.write_bytes(data[:-1] + b"X")
    assert compiled_cache.read_entry(path) is None
    path.write_bytes(b"engine bytes")  # a plain file placed there
    assert compiled_cache.read_entry(path) is None
    assert compiled_cache.read_entry(path.with_name("absent.bin")) is None


def test_a_valid_entry_copied_from_another_package_does_not_verify(cache):
    theirs = compiled_cache.backend_dir("other-package", "b") / "entry.bin"
    compiled_cache.write_entry(theirs, b"their engine")
    ours = compiled_cache.backend_dir("our-package", "b") / "entry.bin"
    shutil.copy(theirs, ours)
    assert compiled_cache.read_entry(theirs) == b"their engine"
    assert compiled_cache.read_entry(ours) is None


def test_an_unwritable_cache_renders_uncached_with_a_warning(tiny_package_source, monkeypatch,
                                                             tmp_path, caplog):  # fmt: skip
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    monkeypatch.setenv(compiled_cache.CACHE_ENV, str(blocker / "cache"))  # under a file: no mkdir
    label, instance = make_maps(seed=5)
    with Renderer(tiny_package_source, "openvino", "fp32") as r:
        assert r.render(label, instance).shape == (1, 32, 64, 3)
    assert (
        "openvino: engine cache" in caplog.text
        and "going on without a cache" in caplog.text
        and f"set {compiled_cache.CACHE_ENV}" in caplog.text
    )


def test_entries_under_an_unusable_cache_root_read_as_missing(monkeypatch, tmp_path):
    """The CUDA kernels' cubin is read straight from the cache root: one under a file is no
    cache (read: None, write: False), not an error that stops the kernels loading."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    monkeypatch.setenv(compiled_cache.CACHE_ENV, str(blocker / "cache"))
    entry = compiled_cache.cache_root() / "cuda-kernels" / "sm90.cubin"
    assert compiled_cache.write_entry(entry, b"cubin") is False
    assert compiled_cache.read_entry(entry) is None


def test_cache_size_setting_must_be_a_number(monkeypatch):
    from p2phd.common.errors import ConfigError

    monkeypatch.setenv(compiled_cache.MAX_MB_ENV, "2GB")
    with pytest.raises(ConfigError, match="P2PHD_CACHE_MAX_MB='2GB'"):
        compiled_cache.max_bytes()
