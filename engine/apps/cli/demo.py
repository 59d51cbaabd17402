"""`p2phd demo`: render the bundled examples with the default model and print a latency table."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "render the default model's bundled examples and time every local backend"


def default_model() -> Path:
    """models/default in the working directory, else beside the (editable) source tree."""
    here = Path("models/default")
    if here.is_dir():
        return here
    import p2phd.engine

    return Path(p2phd.engine.__file__).resolve().parents[1] / "models" / "default"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="model package (default: models/default)")
    parser.add_argument("-o", "--output", type=Path, default=Path("demo-out"))


def run(args: argparse.Namespace) -> int:
    from p2phd.engine.apps.demo import run_demo

    return run_demo(args.model or default_model(), args.output)
