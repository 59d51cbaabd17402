"""`p2phd edit` as a user starts it: a real process serving the page on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from p2phd.engine.apps.cli import main
from tests.server.conftest import free_port


def test_edit_serves_the_page_for_a_package(default_model):
    port = free_port()
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "edit", str(default_model),
           "--port", str(port), "--backend", "onnxruntime"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "open http://" in line:
                break
        assert f"http://127.0.0.1:{port}/" in lines[-1], "".join(lines)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=30) as r:
            info = json.load(r)
        assert info["renderer"]["backend"] == "onnxruntime"
        assert any(c["name"] == "car" for c in info["classes"])
    finally:
        proc.terminate()
        proc.wait(30)


def test_edit_without_a_package_is_a_clean_error(tmp_path, capsys):
    assert main(["edit", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "not a model package" in err and "Traceback" not in err
