"""`p2phd info` lists the engines this machine's engine cache holds for the package (they no
longer live in MODEL_DIR/engines/): the real CLI in a subprocess, over a real ONNX Runtime entry."""

from __future__ import annotations

import calendar
import os
import subprocess
import sys

import onnxruntime

from p2phd.engine.core import compiled_cache
from p2phd.engine.core.renderer import Renderer
from p2phd.export.package_info import human_size
from p2phd.export.package_writer import export_package
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_generator

USED = calendar.timegm((2026, 1, 2, 3, 4, 5))  # 2026-01-02 03:04:05 UTC


def info(model_dir) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "p2phd.engine.apps.cli", "info", str(model_dir)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_info_lists_this_packages_cached_engines(tmp_path, monkeypatch):
    monkeypatch.setenv(compiled_cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("TZ", "UTC")
    cfg = ModelConfig(label_nc=3, ngf=2, n_downsample_global=1, n_blocks_global=0)
    package = export_package(tmp_path / "m", build_generator(cfg), cfg, fp16=False)
    assert "none (built on first use" in info(package)

    (entry,) = Renderer(package, "onnxruntime", "fp32").backend.build()
    theirs = compiled_cache.backend_dir("f" * 24, "openvino-2025-cpu") / "theirs.blob"
    compiled_cache.write_entry(theirs, b"another package's engine")
    os.utime(entry, (USED, USED))

    text = info(package)
    row = next(line for line in text.splitlines() if entry.name in line)
    assert row.split()[:2] == ["onnxruntime", f"{onnxruntime.__version__}-cpu"]
    assert human_size(entry.stat().st_size) in row and "2026-01-02 03:04" in row
    assert "theirs.blob" not in text  # another package's entries are not this one's
    assert entry.stat().st_mtime == USED  # listing is not a use: eviction order is kept
