"""`p2phd info`: what a model package holds, its built engines and their measured quality."""

from __future__ import annotations

import argparse

HELP = "show a model package: architecture, inputs, files, encoder/features, engines, quality"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="a model package directory")


def run(args: argparse.Namespace) -> int:
    from p2phd.export.package_info import describe_package

    print(describe_package(args.model_dir))
    return 0
