"""The editor on the default model package: a Flask app, and the same app on a real local port."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from p2phd.engine.apps.editor.app import create_app
from p2phd.engine.core.package import ModelPackage

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default"


@pytest.fixture(scope="session")
def default_model() -> Path:
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def editor_renderer():
    """The default model on ONNX Runtime (fp32: renders are repeatable to the byte)."""
    from p2phd.engine.core.renderer import Renderer

    renderer = Renderer(DEFAULT_MODEL, backend="onnxruntime", precision="fp32")
    yield renderer
    renderer.close()


@pytest.fixture(scope="session")
def editor_app(editor_renderer):
    return create_app(editor_renderer, ModelPackage(DEFAULT_MODEL))


@pytest.fixture
def client(editor_app):
    return editor_app.test_client()


@pytest.fixture(scope="session")
def editor_url(editor_app):
    """The editor served on 127.0.0.1 (a free port) for the session, as a browser sees it."""
    from werkzeug.serving import make_server

    http = make_server("127.0.0.1", 0, editor_app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}/"
    http.shutdown()
    thread.join()
