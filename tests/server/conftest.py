"""Server test fixtures: a tiny model package, real servers on 127.0.0.1, and engine wrappers.

The package is exported once per session through the real export path (ngf 4, 12 classes with
instance edges), so a 32x64 render takes milliseconds. Servers run in a background thread with
their own event loop and bind port 0 (a free port picked by the OS).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from p2phd.engine.serving.server import P2PHDServer, ServerConfig, default_renderer
from tests.doubles.engine import WrappedEngine

LABEL_NC = 12


@pytest.fixture(scope="session")
def server_package(tmp_path_factory) -> Path:
    import torch

    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pixhd.config import ModelConfig
    from p2phd.train.pix2pixhd.networks import build_generator

    torch.manual_seed(0)
    cfg = ModelConfig(label_nc=LABEL_NC, instance=True, feat_num=0, ngf=4,
                      n_downsample_global=2, n_blocks_global=1)  # fmt: skip
    out = tmp_path_factory.mktemp("server-pkg") / "tiny"
    return export_package(out, build_generator(cfg), cfg, fp16=False)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server started in another process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_maps(h: int = 32, w: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A label map with a few rectangles of classes < LABEL_NC and their instance ids."""
    rng = np.random.default_rng(seed)
    label = np.full((h, w), 1, np.uint8)
    instance = np.full((h, w), 1, np.int32)
    for k in range(4):
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        cls = int(rng.integers(2, LABEL_NC))
        label[y : y + h // 3, x : x + w // 3] = cls
        instance[y : y + h // 3, x : x + w // 3] = cls * 1000 + k
    return label, instance


class ThreadedServer:
    """A P2PHDServer running on its own event loop in a daemon thread."""

    def __init__(self, config: ServerConfig, factory=default_renderer):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = P2PHDServer(config, factory)
        try:
            self.port = self.call(self.server.start())
        except BaseException:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            raise
        self.target = f"127.0.0.1:{self.port}"

    def call(self, coro, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def metrics_text(self) -> str:
        import urllib.request

        url = f"http://127.0.0.1:{self.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()

    def stop(self) -> None:
        self.call(self.server.stop(grace=5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def start_server(server_package):
    """Start servers on the tiny package: `start_server(factory=None, **config)`; stopped after."""
    started: list[ThreadedServer] = []

    def start(factory=default_renderer, **overrides) -> ThreadedServer:
        overrides.setdefault("port", 0)
        overrides.setdefault("metrics_port", 0)
        s = ThreadedServer(ServerConfig(model_dir=server_package, **overrides), factory)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


class GatedEngine(WrappedEngine):
    """Wraps the real Renderer: counts the images it renders and can hold calls at a gate."""

    def __init__(self, renderer):
        super().__init__(renderer)
        self.rendered = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def render(self, labels, instances=None, style=None):
        self.entered.set()
        assert self.gate.wait(30), "test gate never opened"
        self.rendered += len(labels)
        return super().render(labels, instances, style)


@pytest.fixture
def gated():
    """A renderer factory whose engine is a GatedEngine; the engine is at `.engine` once built."""

    class Factory:
        engine: GatedEngine | None = None

        def __call__(self, config):
            self.engine = GatedEngine(default_renderer(config))
            return self.engine

    return Factory()
