"""`p2phd triton MODEL_DIR`: serve a model package inside a real NVIDIA Triton Inference Server.

The package is served through a Triton model repository (`p2phd export-triton`, here referring to
the package where it is) by the tritonserver the nvidia-pytriton wheel bundles, or a stock one
(--tritonserver). `p2phd serve`'s engine, batching and address flags mean the same here; Triton
serves health, metadata, statistics and inference over KServe v2 gRPC (and HTTP with
--http-port), Prometheus metrics with --metrics-port.
"""

from __future__ import annotations

import argparse

from p2phd.common.options import PORT
from p2phd.engine.apps.cli.config_flags import add_config_flags, bounded, config_from_args
from p2phd.engine.apps.cli.serve import ENGINE_FLAGS, add_engine_flags
from p2phd.engine.serving.config import MODEL_SETTINGS, InstanceGroup, ServerConfig

HELP = "serve a model package inside NVIDIA Triton Inference Server (Python backend, its batcher)"

# ServerConfig fields whose `p2phd serve` flags mean the same for the Triton process.
SERVER_FLAGS = ("host", "port", "metrics_port", "grace_seconds")
# --max-queue: Triton's queue is unbounded unless it is given (see repository.config_pbtxt).
UNBOUNDED_QUEUE_HELP = (
    " (Triton: UNAVAILABLE; unbounded unless given: a queue bound stalls its batcher)"
)


def add_repository_flags(parser: argparse.ArgumentParser, server_flags=()) -> None:
    """MODEL_DIR, `p2phd serve`'s flags for the model (and `server_flags`), and how Triton
    should place the model's instances."""
    add_config_flags(
        parser,
        ServerConfig,
        only=("model_dir", "model_name", *MODEL_SETTINGS, *server_flags),
        skip=ENGINE_FLAGS,
        defaults={"max_queue": None},
        notes={"max_queue": UNBOUNDED_QUEUE_HELP},
    )
    add_engine_flags(parser)
    add_config_flags(parser, InstanceGroup)


def server_config(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig that `p2phd serve` with the same model flags would use."""
    return config_from_args(ServerConfig, args)


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_flags(parser, SERVER_FLAGS)
    parser.add_argument(
        "--http-port", type=bounded(int, PORT), default=None, help="Triton's HTTP/REST port"
    )
    parser.add_argument(
        "--repository",
        default=None,
        help="write the model repository here (default: a temporary directory)",
    )
    parser.add_argument(
        "--tritonserver",
        default=None,
        help="a stock tritonserver binary (default: nvidia-pytriton's)",
    )
    parser.add_argument(
        "--backend-directory", default=None, help="its backends (default: BINARY/../../backends)"
    )


def run(args: argparse.Namespace) -> int:
    import signal
    import tempfile
    from pathlib import Path

    from p2phd.engine.serving.triton.launch import TritonServer
    from p2phd.engine.serving.triton.repository import export_repository

    config = server_config(args)
    with tempfile.TemporaryDirectory(prefix="p2phd-triton-") as work:
        repo = Path(args.repository or Path(work) / "repository")
        export_repository(
            config.model_dir,
            repo,
            config,
            config_from_args(InstanceGroup, args),
            copy=False,
            bounded_queue=args.max_queue is not None,
        )
        server = TritonServer(
            repo,
            Path(work),
            host=args.host,
            grpc_port=args.port,
            http_port=args.http_port,
            metrics_port=args.metrics_port,
            grace=args.grace_seconds,
            binary=args.tritonserver and Path(args.tritonserver),
            backends=args.backend_directory and Path(args.backend_directory),
        )

        def stop(*_) -> None:  # SIGTERM/SIGINT: Triton drains within the grace period
            if server.process is None:
                raise KeyboardInterrupt
            server.process.send_signal(signal.SIGTERM)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        server.start()
        print(
            f"p2phd triton: model {config.model_name!r} ready; KServe v2 gRPC on {server.target}"
            + (f", HTTP on :{args.http_port}" if args.http_port else "")
            + (f", metrics on :{args.metrics_port}" if args.metrics_port else ""),
            flush=True,
        )
        return server.wait()
