"""`p2phd export-triton MODEL_DIR -o REPO`: a Triton model repository serving the package.

REPO/<name>/config.pbtxt, REPO/<name>/1/model.py (Triton's Python backend) and the package beside
it, for a stock `tritonserver --model-repository REPO`. The Python environment of Triton's Python
backend needs p2phd installed (see the README's Triton section).
"""

from __future__ import annotations

import argparse

from p2phd.engine.apps.cli.config_flags import config_from_args
from p2phd.engine.apps.cli.triton import add_repository_flags, server_config
from p2phd.engine.serving.config import InstanceGroup

HELP = "write a Triton Inference Server model repository (Python backend) for a model package"


def configure(parser: argparse.ArgumentParser) -> None:
    add_repository_flags(parser)
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="REPO",
        help="model repository directory (created; may hold other models)",
    )
    parser.add_argument(
        "--execution-env",
        default=None,
        metavar="PATH",
        help="Triton's EXECUTION_ENV_PATH for the model: a packed Python "
        "environment with p2phd (default: the Python backend's own)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from p2phd.engine.serving.triton.repository import export_repository

    config = server_config(args)
    model = export_repository(
        config.model_dir,
        Path(args.output),
        config,
        config_from_args(InstanceGroup, args),
        bounded_queue=args.max_queue is not None,
        execution_env=args.execution_env,
    )
    print(f"wrote {model} (serve it with: tritonserver --model-repository {args.output})")
    return 0
