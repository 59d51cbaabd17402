"""The `p2phd` command: one subcommand per module in this package.

Each command module defines `HELP` (one line), `configure(parser)` (its arguments) and
`run(args) -> int` (exit status). Modules import their heavy dependencies (torch, backends)
inside `run`, so `p2phd --help` stays fast and works without the `train` extra.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from p2phd.common.errors import P2PHDError

COMMANDS = (
    "synth",
    "train",
    "cluster",
    "export",
    "build",
    "info",
    "render",
    "serve",
    "client",
    "bench",
    "demo",
    "edit",
    "doctor",
    "triton",
    "export-triton",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2phd",
        description="Render photos from semantic label maps with pix2pixHD-style models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"p2phd.engine.apps.cli.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.prog = f"p2phd {name}"
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except P2PHDError as e:
        print(f"p2phd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user named: unwritable, not a directory, disk full, ...
        logging.getLogger("p2phd").debug("%s", e, exc_info=True)  # the trace with --verbose
        print(f"p2phd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"p2phd {args.command}: interrupted", file=sys.stderr)
        return 130
