"""`p2phd triton MODEL_DIR`: serve a model package inside a real NVIDIA Triton Inference Server.

The package is served through a Triton model repository (`p2phd export-triton`, here referring to
the package where it is) by the tritonserver the nvidia-pytriton wheel bundles, or a stock one
(--tritonserver). `p2phd serve`'s engine, batching and address flags mean the same here; Triton
serves health, metadata, statistics and inference over KServe v2 gRPC (and HTTP with
--http-port), Prometheus metrics with --metrics-port.
"""

from __future__ import annotations

import argparse

HELP = "serve a model package inside NVIDIA Triton Inference Server (Python backend, its batcher)"

# `p2phd serve` flags (by dest) that configure the model, and the ServerConfig field each sets.
MODEL_FLAGS = {
    "backend": "backend",
    "precision": "precision",
    "size_policy": "size_policy",
    "max_batch": "max_batch_size",
    "max_queue_delay_us": "max_queue_delay_us",
    "preferred_batch": "preferred_batch_sizes",
    "max_queue": "max_queue",
    "max_image_pixels": "max_image_pixels",
    "max_image_side": "max_image_side",
    "model_name": "model_name",
}
# `p2phd serve` flags that mean the same for the Triton process.
SERVER_FLAGS = ("host", "port", "metrics_port", "grace")


# --max-queue: Triton's queue is unbounded unless it is given (see repository.config_pbtxt).
UNBOUNDED_QUEUE_HELP = (
    " (Triton: UNAVAILABLE; unbounded unless given: a queue bound stalls its batcher)"
)


def add_serve_flags(parser: argparse.ArgumentParser, dests) -> None:
    """Add `p2phd serve`'s own definitions (names, defaults, help) of the flags in `dests`."""
    from p2phd.engine.apps.cli import serve

    scratch = argparse.ArgumentParser(add_help=False)
    serve.configure(scratch)
    for a in scratch._actions:
        if a.dest in dests and a.option_strings:
            queue = a.dest == "max_queue"
            parser.add_argument(
                *a.option_strings,
                dest=a.dest,
                default=None if queue else a.default,
                type=a.type,
                nargs=a.nargs,
                choices=a.choices,
                help=a.help + UNBOUNDED_QUEUE_HELP if queue else a.help,
                metavar=a.metavar,
            )


def add_repository_flags(parser: argparse.ArgumentParser) -> None:
    """The model flags, and how Triton should place the model's instances."""
    add_serve_flags(parser, MODEL_FLAGS)
    parser.add_argument(
        "--kind",
        default="auto",
        choices=("auto", "cpu", "gpu"),
        help="instance group kind: KIND_GPU when a GPU is present (default auto)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="model instances per device (each its own Renderer; default 1)",
    )


def server_config(args: argparse.Namespace):
    """The ServerConfig that `p2phd serve` with the same model flags would use."""
    from pathlib import Path

    from p2phd.engine.serving.server import ServerConfig

    given = {
        field: getattr(args, dest)
        for dest, field in MODEL_FLAGS.items()
        if getattr(args, dest, None) is not None
    }
    if "preferred_batch_sizes" in given:
        given["preferred_batch_sizes"] = tuple(given["preferred_batch_sizes"])
    return ServerConfig(model_dir=Path(args.model_dir), **given)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="model package directory")
    add_repository_flags(parser)
    add_serve_flags(parser, SERVER_FLAGS)
    parser.add_argument("--http-port", type=int, default=None, help="Triton's HTTP/REST port")
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
            kind=args.kind,
            instances=args.instances,
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
            grace=args.grace,
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
