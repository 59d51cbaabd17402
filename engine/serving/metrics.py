"""The server's Prometheus metrics: requests, queue depth, batch sizes, queue/compute latency.

Each server owns its own registry, so several servers (tests, embedding) can live in one process.
`ServerMetrics` is also the batcher's observer (`batcher.BatchObserver`), and keeps running
totals in the shape of KServe/Triton's ModelStatistics for that protocol's statistics call.
All updates happen on the server's event loop.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from p2phd.engine.serving.bounded_http import BoundedThreadingMixIn

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
INFERENCE_METHODS = frozenset({"Render", "RenderStream", "ModelInfer", "ModelStreamInfer"})
# The /metrics endpoint's connections at once, and how long one may stay silent (seconds).
HTTP_MAX_CONNECTIONS = 8
HTTP_IDLE_TIMEOUT = 10.0


@dataclass
class Duration:
    """A count and a cumulative duration in nanoseconds (Triton's StatisticDuration)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * count * 1e9)


@dataclass
class ModelTotals:
    """Per-model running totals: requests (success/fail/queue/compute) and engine calls."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)


class _QuietHandler(WSGIRequestHandler):
    """Logs nothing per request."""

    def log_message(self, format, *args) -> None:
        pass


class ServerMetrics:
    """All metrics of one server, in one registry; `serve_http` exposes them at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "p2phd_requests", "Requests (stream items count one each) by method and status",
            ["method", "status"], registry=r,
        )  # fmt: skip
        self.queue_depth_gauge = Gauge(
            "p2phd_queue_depth", "Requests waiting for the engine", registry=r
        )
        self.batch_size = Histogram(
            "p2phd_batch_size", "Requests per engine call", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_seconds = Histogram(
            "p2phd_queue_seconds", "Time a request waited in the batcher's queue",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.compute_seconds = Histogram(
            "p2phd_compute_seconds", "Engine time per batch", buckets=LATENCY_BUCKETS, registry=r
        )
        self.request_seconds = Histogram(
            "p2phd_request_seconds", "Total time per request, decode to encoded response",
            ["method"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.dropped_total = Counter(
            "p2phd_dropped", "Requests dropped before the engine, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.batch_failures = Counter(
            "p2phd_batch_failures", "Engine calls that raised", registry=r
        )
        self.totals = ModelTotals()
        self._http = None
        self._http_thread: threading.Thread | None = None

    # -- the batcher's observer ----------------------------------------------------------------

    def queue_depth(self, depth: int) -> None:
        self.queue_depth_gauge.set(depth)

    def dispatched(self, batch_size: int, queue_seconds: Sequence[float]) -> None:
        self.batch_size.observe(batch_size)
        for s in queue_seconds:
            self.queue_seconds.observe(s)
            self.totals.queue.add(s)

    def computed(self, batch_size: int, compute_seconds: float, ok: bool) -> None:
        self.compute_seconds.observe(compute_seconds)
        if not ok:
            self.batch_failures.inc()
            return
        t = self.totals
        t.inference_count += batch_size
        t.execution_count += 1
        t.last_inference_ms = int(time.time() * 1000)
        t.compute.add(compute_seconds, batch_size)
        t.batches.setdefault(batch_size, Duration()).add(compute_seconds)

    def dropped(self, reason: str) -> None:
        self.dropped_total.labels(reason).inc()

    # -- requests --------------------------------------------------------------------------------

    def request_done(self, method: str, status: str, seconds: float) -> None:
        self.requests.labels(method, status).inc()
        self.request_seconds.labels(method).observe(seconds)
        if method in INFERENCE_METHODS:
            (self.totals.success if status == "OK" else self.totals.fail).add(seconds)

    # -- exposition -------------------------------------------------------------------------------

    def serve_http(self, host: str, port: int) -> int:
        """Serve /metrics on a daemon thread; returns the bound port (useful with port 0)."""
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server_class = type("MetricsServer", (BoundedThreadingMixIn, WSGIServer),
                            {"address_family": family})  # fmt: skip
        self._http = server_class((host, port), _QuietHandler,
                                  max_connections=HTTP_MAX_CONNECTIONS,
                                  idle_timeout=HTTP_IDLE_TIMEOUT)  # fmt: skip
        self._http.set_app(make_wsgi_app(self.registry))
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, name="p2phd-metrics", daemon=True
        )
        self._http_thread.start()
        return self._http.server_port

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
