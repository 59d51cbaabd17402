"""`p2phd render --server`: a directory rendered through a running server equals local rendering."""

import subprocess
import sys

import numpy as np
from PIL import Image

from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from tests.server.conftest import make_maps


def test_render_through_server_matches_local_fp32(start_server, server_package, tmp_path):
    server = start_server(backend="onnxruntime", precision="fp32", max_batch_size=4)
    (tmp_path / "labels").mkdir()
    (tmp_path / "inst").mkdir()
    maps = {}
    for i in range(5):
        label, instance = make_maps(seed=i)
        maps[f"m{i}"] = (label, instance)
        Image.fromarray(label).save(tmp_path / "labels" / f"m{i}_labelIds.png")
        Image.fromarray(instance.astype(np.uint16)).save(
            tmp_path / "inst" / f"m{i}_instanceIds.png"
        )
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "render", str(server_package)]
    cmd += ["--labels", str(tmp_path / "labels"), "--instances", str(tmp_path / "inst")]
    cmd += ["-o", str(out), "--server", server.target, "--seed", "2", "--batch", "3", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "rendered 5" in proc.stdout

    with Renderer(server_package, backend="onnxruntime", precision="fp32") as local:
        for key, (label, instance) in maps.items():
            expected = local.render(label, instance, Style(seed=2))[0]
            np.testing.assert_array_equal(np.asarray(Image.open(out / f"{key}.png")), expected)


def test_render_through_unreachable_server_says_so(server_package, tmp_path):
    (tmp_path / "labels").mkdir()
    label, _ = make_maps()
    Image.fromarray(label).save(tmp_path / "labels" / "a.png")
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "render", str(server_package)]
    cmd += ["--labels", str(tmp_path / "labels"), "--no-instance", "-o", str(tmp_path / "o")]
    proc = subprocess.run(
        [*cmd, "--server", "127.0.0.1:1", "--quiet"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "127.0.0.1:1" in proc.stderr and "Traceback" not in proc.stderr
