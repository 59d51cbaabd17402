"""`p2phd render --ray`: the same job on a local Ray instance gives the same images as local."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from tests.engine.test_batch_render import write_maps

pytest.importorskip("ray", reason="Ray is not installed (pip install 'p2phd[ray]')")


def test_ray_render_matches_local_fp32_and_reports_bad_inputs(tiny_package, tmp_path):
    keys = write_maps(tmp_path, 5, 32, 64, cityscapes=True)
    (tmp_path / "labels" / "city0" / "broken_gtFine_labelIds.png").write_bytes(b"not a png")
    (tmp_path / "instances" / "city0" / "broken_gtFine_instanceIds.png").write_bytes(b"x")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "render", str(tiny_package)]
    cmd += ["--labels", str(tmp_path / "labels"), "--instances", str(tmp_path / "instances")]
    cmd += ["-o", str(out), "--backend", "onnxruntime", "--precision", "fp32", "--quiet"]
    proc = subprocess.run(
        [*cmd, "--ray", "--seed", "5"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr  # the broken pair fails, the rest renders
    assert "broken_gtFine_labelIds.png" in proc.stderr
    assert "rendered 5" in proc.stdout and "failed 1" in proc.stdout

    with Renderer(tiny_package, backend="onnxruntime", precision="fp32") as r:
        for lab in sorted((tmp_path / "labels").rglob("city*_labelIds.png")):
            key = lab.name.removesuffix("_gtFine_labelIds.png")
            inst = next((tmp_path / "instances").rglob(f"{key}_gtFine_instanceIds.png"))
            expected = r.render_files(lab, inst, Style(seed=5))
            np.testing.assert_array_equal(np.asarray(Image.open(out / f"{key}.png")), expected)
    assert sorted(p.stem for p in out.iterdir()) == sorted(keys)
