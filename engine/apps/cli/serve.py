"""`p2phd serve MODEL_DIR`: serve rendering over gRPC (p2phd.v1.Renderer and KServe v2).

Its flags are generated from `ServerConfig`'s fields (p2phd.engine.serving.config), where each
default and help line is stated; only --backend and --precision are written here, since their
choices come from the backend registry.
"""

from __future__ import annotations

import argparse

from p2phd.engine.apps.cli.config_flags import add_config_flags, config_from_args
from p2phd.engine.backends import backend_choices, precision_choices
from p2phd.engine.serving.config import ServerConfig

HELP = "serve a model package over gRPC with dynamic batching, health, reflection and metrics"
ENGINE_FLAGS = ("backend", "precision")


def add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """--backend and --precision, whose dests are ServerConfig's fields."""
    backends, precisions = backend_choices(), precision_choices()
    parser.add_argument(
        "--backend", default="auto", choices=backends, help="engine backend (default auto)"
    )
    parser.add_argument(
        "--precision", default="auto", choices=precisions, help="engine precision (default auto)"
    )


def configure(parser: argparse.ArgumentParser) -> None:
    add_config_flags(parser, ServerConfig, skip=ENGINE_FLAGS)
    add_engine_flags(parser)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import os
    import sys

    from p2phd.engine.serving.server import serve

    config = config_from_args(ServerConfig, args)
    if not asyncio.run(serve(config)):
        # A batch outlived --grace: exit now rather than join its engine thread at exit.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
