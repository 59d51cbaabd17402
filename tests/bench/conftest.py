"""A tiny model package for the benchmark tests, and one `p2phd bench` run over it.

ngf 4, 2 downsamples, 1 block, label_nc 35 + edges + 3 feature channels with clusters, so the
baseline's torch one-hot, edges and sampled features all run; 32x64 maps keep a case to ms.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TINY_BATCHES = (1, 2)
TINY_SIZE = (32, 64)


@pytest.fixture(scope="session")
def bench_shape() -> tuple[tuple[int, ...], tuple[int, int]]:
    """(batches, (height, width)) of the tiny benchmark run."""
    return TINY_BATCHES, TINY_SIZE


@pytest.fixture(scope="session")
def bench_package(tmp_path_factory) -> Path:
    import torch

    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pixhd.config import ModelConfig
    from p2phd.train.pix2pixhd.networks import build_generator

    torch.manual_seed(0)
    cfg = ModelConfig(label_nc=35, feat_num=3, ngf=4, n_downsample_global=2, n_blocks_global=1)
    rng = np.random.default_rng(0)
    features = {c: rng.uniform(-1, 1, (3, 3)).astype(np.float32) for c in (7, 24, 26)}
    out = tmp_path_factory.mktemp("bench") / "tiny"
    # with the fp16 variant: TensorRT's fp16 rows build from generator.fp16.onnx
    return export_package(out, build_generator(cfg), cfg, features=features, fp16=True)


@pytest.fixture(scope="session")
def bench_run(bench_package, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`p2phd bench` over every CPU backend and precision on the tiny package (one run)."""
    out = tmp_path_factory.mktemp("results") / "bench-tiny"
    h, w = TINY_SIZE
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "p2phd.engine.apps.cli",
            "bench",
            str(bench_package),
            "--backends",
            "openvino,onnxruntime,torch,tensorrt",
            "--precision",
            "fp32,bf16,fp16",
            "--batch",
            ",".join(map(str, TINY_BATCHES)),
            "--size",
            f"{h}x{w}",
            "--warmup",
            "1",
            "--iters",
            "2",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, out


@pytest.fixture(scope="session")
def bench_result(bench_run) -> dict:
    proc, out = bench_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "bench.json").read_text())
