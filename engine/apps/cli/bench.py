"""`p2phd bench`: benchmark a model package across backends, precisions, batches and sizes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from p2phd.engine.backends import backend_names, precisions

HELP = "benchmark latency, throughput, memory, share of peak and quality vs the pix2pixHD baseline"

OTHER_LOAD_LIMIT = 0.10  # other processes' share of the CPUs above which timings are noisy


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="the model package")
    parser.add_argument(
        "--backends",
        default=",".join(backend_names("cpu")),
        help=f"comma-separated: {', '.join(backend_names())} (default: the CPU ones, %(default)s)",
    )
    parser.add_argument(
        "--precision", default="fp32,bf16", help=f"comma-separated: {','.join(precisions())}"
    )
    parser.add_argument("--batch", default="1,2,4", help="comma-separated batch sizes")
    parser.add_argument("--size", default="256x512", help="comma-separated HxW sizes")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per case")
    parser.add_argument("--iters", type=int, default=10, help="timed runs per case")
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the original pix2pixHD path (torch eager fp32, batch 1)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="output folder (default benchmarks/results/bench-<model name>)",
    )


def _check_writable(folder: Path) -> None:
    """ConfigError unless `folder` is, or can be made, a writable directory (made nothing)."""
    from p2phd.common.errors import ConfigError

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--output {folder}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {folder}: {existing} is not writable")


def run(args: argparse.Namespace) -> int:
    from p2phd.common.errors import ConfigError
    from p2phd.engine.apps.bench.harness import BenchConfig, run_bench
    from p2phd.engine.apps.bench.report import write_report
    from p2phd.engine.core.size_policy import parse_size

    try:
        batches = tuple(int(b) for b in _csv(args.batch))
    except ValueError:
        raise ConfigError(f"--batch {args.batch!r}: expected comma-separated integers") from None
    config = BenchConfig(
        model_dir=Path(args.model_dir),
        backends=_csv(args.backends),
        precisions=_csv(args.precision),
        batches=batches,
        sizes=tuple(parse_size(s) for s in _csv(args.size)),
        warmup=args.warmup,
        iters=args.iters,
        baseline=args.baseline,
    )
    out = Path(args.output or Path("benchmarks/results") / f"bench-{Path(args.model_dir).name}")
    _check_writable(out)  # now, not after the run
    result = run_bench(config, progress=lambda msg: print(f"bench: {msg}", flush=True))
    share = result["other_load"]["other_cpu_share"]
    if share is not None and share > OTHER_LOAD_LIMIT:
        result["provisional"] = (
            f"other processes used {share:.0%} of the CPUs during the run "
            f"(> {OTHER_LOAD_LIMIT:.0%}): timings are noisy"
        )
    for path in write_report(result, out):
        print(f"wrote {path}")
    failed = [r for r in result["rows"] if r["status"] == "failed"]
    for r in failed:
        print(f"failed: {r['backend']} {r['precision']} {r['batch']}x{r['size']}: {r['reason']}")
    return 1 if failed else 0
