"""`p2phd serve MODEL_DIR`: serve rendering over gRPC (p2phd.v1.Renderer and KServe v2)."""

from __future__ import annotations

import argparse

HELP = "serve a model package over gRPC with dynamic batching, health, reflection and metrics"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="model package directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50051, help="gRPC port (default 50051)")
    parser.add_argument("--backend", default="auto", help="engine backend (default auto)")
    parser.add_argument("--precision", default="auto", help="engine precision (default auto)")
    parser.add_argument("--size-policy", default="pad", choices=("pad", "resize", "reject"))
    b = parser.add_argument_group("dynamic batching")
    b.add_argument("--max-batch", type=int, default=8, help="max images per engine call")
    b.add_argument(
        "--max-queue-delay-us", type=int, default=2000,
        help="how long the oldest request may wait for a fuller batch (microseconds)",
    )  # fmt: skip
    b.add_argument(
        "--preferred-batch", type=int, nargs="*", default=[],
        help="batch sizes dispatched at once when they can be formed",
    )  # fmt: skip
    b.add_argument(
        "--max-queue", type=int, default=64,
        help="requests waiting at most; beyond it RESOURCE_EXHAUSTED at once",
    )  # fmt: skip
    lim = parser.add_argument_group("limits and lifecycle")
    lim.add_argument(
        "--max-message-mb", type=float, default=64,
        help="max gRPC message size in MiB, in and out (default 64: 2048x1024 raw fits)",
    )  # fmt: skip
    lim.add_argument(
        "--max-image-pixels", type=int, default=None,
        help="max pixels per image, as sent and as computed after padding or resizing "
        "(default: the decoder's limit, 2048*2048*2)",
    )  # fmt: skip
    lim.add_argument(
        "--max-image-side", type=int, default=None,
        help="max pixels a side the generator computes per image, after padding or resizing "
        "(default 8192; with --max-image-pixels, the most work one image can cost)",
    )  # fmt: skip
    lim.add_argument(
        "--max-concurrent-rpcs", type=int, default=256,
        help="calls open at once (a stream is one; health and liveness checks are not counted); "
        "beyond it RESOURCE_EXHAUSTED (default 256)",
    )  # fmt: skip
    lim.add_argument(
        "--stream-idle-timeout", type=float, default=60.0,
        help="end a stream that sends nothing for this long with nothing pending (seconds)",
    )  # fmt: skip
    lim.add_argument("--grace", type=float, default=30.0, help="SIGTERM drain period (seconds)")
    lim.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls-cert", default=None, help="server certificate chain (PEM)")
    tls.add_argument("--tls-key", default=None, help="server private key (PEM)")
    tls.add_argument("--tls-client-ca", default=None, help="require client certs from this CA")
    parser.add_argument("--model-name", default="p2phd", help="model name for KServe v2 calls")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os
    import sys
    from pathlib import Path

    from p2phd.engine.serving.server import ServerConfig, serve

    config = ServerConfig(
        model_dir=Path(args.model_dir),
        host=args.host,
        port=args.port,
        backend=args.backend,
        precision=args.precision,
        size_policy=args.size_policy,
        max_batch_size=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us,
        preferred_batch_sizes=tuple(args.preferred_batch),
        max_queue=args.max_queue,
        max_message_bytes=int(args.max_message_mb * (1 << 20)),
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        stream_idle_seconds=args.stream_idle_timeout,
        metrics_port=args.metrics_port,
        grace_seconds=args.grace,
        tls_cert=args.tls_cert and Path(args.tls_cert),
        tls_key=args.tls_key and Path(args.tls_key),
        tls_client_ca=args.tls_client_ca and Path(args.tls_client_ca),
        model_name=args.model_name,
    )
    if args.max_image_pixels is not None:
        config.max_image_pixels = args.max_image_pixels
    if args.max_image_side is not None:
        config.max_image_side = args.max_image_side
    if not asyncio.run(serve(config)):
        # A batch outlived --grace: exit now rather than join its engine thread at exit.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
