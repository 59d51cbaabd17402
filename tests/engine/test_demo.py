"""`p2phd demo`: real images from the package's examples and a measured table per backend."""

import subprocess
import sys

import numpy as np
from PIL import Image

from p2phd.engine.quality import synthetic_maps


def test_demo_renders_examples_and_times_backends(tiny_package, tmp_path):
    labels, instances = synthetic_maps(3, 32, 64, 35, seed=11)
    examples = tiny_package / "examples"
    examples.mkdir()
    for i in range(3):
        Image.fromarray(labels[i]).save(examples / f"ex{i}_labelIds.png")
        Image.fromarray(instances[i].astype(np.uint16)).save(examples / f"ex{i}_instanceIds.png")
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "p2phd.engine.cli", "demo", "--model", str(tiny_package)]
    proc = subprocess.run([*cmd, "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    images = sorted((out / "images").iterdir())
    assert [p.name for p in images] == ["ex0.png", "ex1.png", "ex2.png"]
    assert all(Image.open(p).size == (64, 32) for p in images)
    table = (out / "latency.md").read_text()
    for backend in ("openvino", "onnxruntime", "torch"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {backend} | fp32"))
        assert float(row.split("|")[3]) > 0  # a measured latency, not a placeholder
    assert str(out / "images") in proc.stdout
