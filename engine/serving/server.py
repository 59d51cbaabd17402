"""The p2phd gRPC server: both services, health, reflection, metrics, TLS and graceful shutdown.

`P2PHDServer` assembles one `RenderCore` (renderer + dynamic batcher) behind `p2phd.v1.Renderer`
and the KServe v2 `inference.GRPCInferenceService`, adds `grpc.health.v1` and server reflection,
and serves Prometheus metrics on their own port. `serve` runs it until SIGTERM/SIGINT, then stops
accepting, finishes the work in flight within the grace period, and returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from p2phd.common.decode import read_regular_file
from p2phd.common.errors import ConfigError
from p2phd.engine.serving.call_limit import CallLimit
from p2phd.engine.serving.config import ServerConfig
from p2phd.engine.serving.kserve import KServeService
from p2phd.engine.serving.metrics import ServerMetrics
from p2phd.engine.serving.render_core import RenderCore, RendererLike
from p2phd.engine.serving.render_service import RendererService
from p2phd.engine.serving.wire import (
    grpc_service_pb2,
    grpc_service_pb2_grpc,
    renderer_pb2,
    renderer_pb2_grpc,
)

log = logging.getLogger(__name__)

RENDERER_SERVICE = renderer_pb2.DESCRIPTOR.services_by_name["Renderer"].full_name
KSERVE_SERVICE = grpc_service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
MAX_PEM_BYTES = 1 << 20  # a certificate chain or key: a few KB


def default_renderer(config: ServerConfig) -> RendererLike:
    """The real Renderer for the config's package, backend and precision."""
    from p2phd.engine.core.renderer import Renderer

    return Renderer(
        config.model_dir,
        backend=config.backend,
        precision=config.precision,
        size_policy=config.size_policy,
        max_pixels=config.max_image_pixels,
        max_side=config.max_image_side,
    )


def _read(path: Path | None, what: str) -> bytes | None:
    """A PEM file's bytes (None without a path): a regular file of at most MAX_PEM_BYTES."""
    return None if path is None else read_regular_file(path, what, MAX_PEM_BYTES)


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the config's PEM files, or None for a plaintext server."""
    if config.tls_cert is None and config.tls_key is None:
        if config.tls_client_ca is not None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if config.tls_cert is None or config.tls_key is None:
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    key = _read(config.tls_key, "TLS key")
    cert = _read(config.tls_cert, "TLS certificate")
    ca = _read(config.tls_client_ca, "TLS client CA")
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def server_version() -> str:
    try:
        return metadata.version("p2phd")
    except metadata.PackageNotFoundError:
        return "unknown"


class P2PHDServer:
    """One serving process's server. Use from an event loop: `await start()`, `await stop()`.

    `renderer_factory(config)` builds the renderer (tests pass one wrapping the real Renderer to
    count or slow its calls); by default the package's Renderer.
    """

    def __init__(
        self,
        config: ServerConfig,
        renderer_factory: Callable[[ServerConfig], RendererLike] = default_renderer,
    ):
        self.config = config
        self._factory = renderer_factory
        self.metrics = ServerMetrics()
        self.core: RenderCore | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self.call_limit: CallLimit | None = None
        self._health = health.aio.HealthServicer()

    async def start(self) -> int:
        """Load the model, bind, and start serving; returns the bound port."""
        cfg = self.config
        credentials = server_credentials(cfg)
        batching = cfg.batcher_config()
        renderer = self._factory(cfg)
        engine = renderer.describe()
        engine_max, most = engine.get("max_batch"), batching.max_batch_size
        if engine_max and engine_max < most:
            log.warning(
                "--max-batch %d is above the engine's largest batch, %d: each batch runs as "
                "calls of %d; 'p2phd build %s --backend %s --batch 1:%d:%d' builds an engine "
                "for whole ones",
                most, engine_max, engine_max, cfg.model_dir, engine["backend"], most, most,
            )  # fmt: skip
        self.core = RenderCore(
            renderer,
            batching,
            self.metrics,
            max_image_pixels=cfg.max_image_pixels,
            io_threads=cfg.io_threads,
            model_name=cfg.model_name,
            stream_idle_seconds=cfg.stream_idle_seconds,
        )
        limit = None if cfg.max_concurrent_rpcs is None else CallLimit(cfg.max_concurrent_rpcs)
        self.call_limit = limit
        server = grpc.aio.server(
            interceptors=[] if limit is None else [limit],
            maximum_concurrent_rpcs=None if limit is None else limit.grpc_limit,
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.max_send_message_length", cfg.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        renderer_pb2_grpc.add_RendererServicer_to_server(RendererService(self.core), server)
        grpc_service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            KServeService(self.core, server_version()), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        services = (RENDERER_SERVICE, KSERVE_SERVICE, health.SERVICE_NAME)
        reflection.enable_server_reflection((*services, reflection.SERVICE_NAME), server)
        address = f"{cfg.host}:{cfg.port}"
        try:
            if credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, credentials)
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {address}: {e}") from e
        if not self.port:
            raise ConfigError(f"cannot listen on {address} (in use, or not a local address?)")
        self.core.start()
        await server.start()
        self._server = server
        for name in ("", RENDERER_SERVICE, KSERVE_SERVICE):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if cfg.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(cfg.host, cfg.metrics_port)
        log.info(
            "serving %s on %s:%d (%s) %s",
            renderer.describe().get("backend", "?"),
            cfg.host,
            self.port,
            "TLS" if credentials else "plaintext",
            f"metrics on :{self.metrics_port}" if self.metrics_port else "",
        )
        return self.port

    async def stop(self, grace: float | None = None) -> bool:
        """Stop accepting, let calls in flight finish within `grace` seconds in all, then release
        everything. Returns False when a batch was still running at the end of the grace period
        (it is abandoned to its thread: exit the process without waiting for it)."""
        grace = self.config.grace_seconds if grace is None else grace
        if self._server is None or self.core is None:
            return True
        server, self._server = self._server, None
        deadline = time.monotonic() + grace
        await self._health.enter_graceful_shutdown()
        self.core.accepting = False
        await server.stop(grace)
        finished = await self.core.close(timeout=max(0.0, deadline - time.monotonic()))
        self.metrics.stop_http()
        if not finished:
            log.warning("grace period of %g s over with a batch still running; not waiting", grace)
        return finished


async def serve(
    config: ServerConfig,
    renderer_factory: Callable[[ServerConfig], RendererLike] = default_renderer,
) -> bool:
    """Serve until SIGTERM or SIGINT, then shut down gracefully; returns whether all work
    finished within the grace period (False: a batch is still running in its thread)."""
    server = P2PHDServer(config, renderer_factory)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: finishing work in flight (grace %g s)", config.grace_seconds)
    finished = await server.stop()
    log.info("stopped")
    return finished
