"""`p2phd edit` under attack (issue 17, finding 11, 12 and the editor's unbounded threads): only
its own host names and its own page may call it, renders and connections are bounded, and every
malformed request gets a 4xx JSON error naming the field, never a 500 HTML page."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2phd.engine.apps.cli import build_parser
from p2phd.engine.apps.editor.app import create_app
from p2phd.engine.core.package import ModelPackage
from tests.editor.conftest import DEFAULT_MODEL
from tests.server.conftest import free_port


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


LABEL = np.full((64, 128), 7, np.uint8)  # road
FORM = {"label": LABEL, "instance": LABEL.astype(np.uint16)}


def form(style: str | None = None) -> dict:
    data = {k: (io.BytesIO(png(v)), f"{k}.png") for k, v in FORM.items()}
    if style is not None:
        data["style"] = style
    return data


# -- finding 11: Host and Origin ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/model"])
def test_a_foreign_host_name_is_refused(client, path):
    """DNS rebinding: evil.example resolves to 127.0.0.1, the browser sends its name."""
    r = client.get(path, headers={"Host": "evil.example:8080"})
    assert r.status_code == 403
    assert "evil.example" in r.get_json()["error"]
    for host in ("localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST"):
        assert client.get(path, headers={"Host": host}).status_code == 200, host


def test_names_given_with_allow_host_are_served(editor_renderer):
    app = create_app(editor_renderer, ModelPackage(DEFAULT_MODEL), allow_hosts=["editor.lan"])
    c = app.test_client()
    assert c.get("/api/model", headers={"Host": "editor.lan:8080"}).status_code == 200
    assert c.get("/api/model", headers={"Host": "other.lan:8080"}).status_code == 403


def test_cross_origin_calls_are_refused_before_any_work(editor_renderer):
    calls = []

    class Spy:
        def render(self, *args):
            calls.append(args)
            return editor_renderer.render(*args)

        def describe(self):
            return editor_renderer.describe()

    c = create_app(Spy(), ModelPackage(DEFAULT_MODEL)).test_client()
    evil = {"Origin": "http://evil.example"}
    r = c.post("/api/render", data=form(), headers=evil, content_type="multipart/form-data")
    assert r.status_code == 403 and "evil.example" in r.get_json()["error"]
    r = c.get("/api/model", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and "cross-site" in r.get_json()["error"]
    assert not calls
    # The page's own calls (same origin) still work.
    own = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    r = c.post("/api/render", data=form(), headers=own, content_type="multipart/form-data")
    assert r.status_code == 200 and len(calls) == 1


# -- finding 11: concurrent renders ---------------------------------------------------------


class GatedEngine:
    """The real renderer, holding each render until `gate` opens; counts renders at once."""

    def __init__(self, inner):
        self.inner, self.gate = inner, threading.Event()
        self.lock, self.active, self.most, self.entered = threading.Lock(), 0, 0, 0

    def render(self, *args):
        with self.lock:
            self.active += 1
            self.entered += 1
            self.most = max(self.most, self.active)
        try:
            self.gate.wait(10)
            return self.inner.render(*args)
        finally:
            with self.lock:
                self.active -= 1

    def describe(self):
        return self.inner.describe()


def served(app):
    from werkzeug.serving import make_server

    http = make_server("127.0.0.1", 0, app, threaded=True)  # unbounded threads: renders race
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http, f"http://127.0.0.1:{http.server_port}"


def post_render(url: str, results: list) -> None:
    boundary = "p2phd-test"
    body = b""
    for name, array in FORM.items():
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{name}.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + png(array)
            + b"\r\n"
        )
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        url + "/api/render",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            results.append((r.status, r.headers, r.read()))
    except urllib.error.HTTPError as e:
        results.append((e.code, e.headers, e.read()))


def test_renders_at_once_are_bounded(editor_renderer):
    engine = GatedEngine(editor_renderer)
    http, url = served(create_app(engine, ModelPackage(DEFAULT_MODEL), max_renders=2))
    try:
        results: list = []
        threads = [threading.Thread(target=post_render, args=(url, results)) for _ in range(8)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and engine.entered < 2:
            time.sleep(0.01)
        deadline = time.monotonic() + 1  # before the fix all 8 entered the engine at once
        while time.monotonic() < deadline and engine.entered < 8:
            time.sleep(0.01)
        engine.gate.set()
        for t in threads:
            t.join(60)
    finally:
        http.shutdown()
    assert engine.most == 2
    assert [status for status, _, _ in results] == [200] * 8  # the others waited their turn


def test_a_render_that_waits_too_long_gets_503_with_retry_after(editor_renderer):
    engine = GatedEngine(editor_renderer)
    app = create_app(engine, ModelPackage(DEFAULT_MODEL), max_renders=1, render_wait=0.2)
    http, url = served(app)
    try:
        first: list = []
        holder = threading.Thread(target=post_render, args=(url, first))
        holder.start()
        while engine.entered < 1:
            time.sleep(0.01)
        second: list = []
        post_render(url, second)
        engine.gate.set()
        holder.join(60)
    finally:
        http.shutdown()
    ((status, headers, body),) = second
    assert status == 503 and headers["Retry-After"] == "1"
    assert "busy" in json.loads(body)["error"]
    assert first[0][0] == 200


# -- finding 12: malformed values get 4xx JSON naming the field -------------------------------


@pytest.mark.parametrize(
    ("style", "field"),
    [
        ('{"seed": 1e400}', "style.seed"),
        ('{"seed": Infinity}', "Infinity"),
        ('{"seed": NaN}', "NaN"),
        ('{"seed": 1.5}', "style.seed"),
        ('{"seed": "7"}', "style.seed"),
        ('{"seed": true}', "style.seed"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"instances": {"26001": 1e400}}', "style.instances"),
        ('{"instances": {"x": 0}}', "style.instances key"),
        ('{"instances": {"26001": 99999999999}}', "style.instances"),
        ('{"instances": [1]}', "style.instances"),
        ("[1, 2]", "style"),
    ],
)
def test_bad_style_values_get_a_json_error_naming_the_field(client, style, field):
    r = client.post("/api/render", data=form(style), content_type="multipart/form-data")
    assert r.status_code == 400, r.data[:200]
    assert field in r.get_json()["error"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("seed=-1", "seed: -1 is outside"),
        ("seed=1e400", "seed: '1e400' is not an integer"),
        ("seed=99999999999999999999", "seed"),
        ("width=abc", "width"),
        ("height=-5", "height"),
    ],
)
def test_bad_scene_parameters_get_a_json_error_naming_the_field(client, query, field):
    r = client.get(f"/api/scene?{query}")
    assert r.status_code == 400
    assert field in r.get_json()["error"]


def test_unknown_paths_and_methods_answer_json(client):
    for r, code in ((client.get("/api/nothing"), 404), (client.get("/api/render"), 405)):
        assert r.status_code == code and r.get_json()["error"]


# -- the editor's HTTP threads ----------------------------------------------------------------


def test_idle_connections_do_not_start_a_thread_each(default_model):
    """`p2phd edit`: 40 idle connections start at most --max-connections threads (before the
    fix: one each), and the page answers again once they go."""
    bound = build_parser().parse_args(["edit", "m"]).max_connections
    port = free_port()
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "edit", str(default_model), "--port",
           str(port), "--backend", "onnxruntime"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tasks = Path(f"/proc/{proc.pid}/task")
    idle = []
    try:
        for line in proc.stdout:
            if "open http://" in line:
                break
        before = len(list(tasks.iterdir()))
        for _ in range(40):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and len(list(tasks.iterdir())) < before + 40:
            time.sleep(0.05)
        assert len(list(tasks.iterdir())) - before <= bound < 40
        for sock in idle:
            sock.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=30) as r:
            assert r.status == 200
    finally:
        for sock in idle:
            sock.close()
        proc.terminate()
        proc.wait(30)
