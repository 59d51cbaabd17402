"""Soak benchmark: a real `p2phd serve` at 70% of its capacity for 10 minutes.

Measures the server's capacity first (closed-loop clients), then offers 70% of it open loop
(Poisson arrivals) for `--seconds`. Passes with zero errors (every request OK), resident memory
growth under 5% (the median RSS over the last minute against the median over the first minute
after `--warmup` seconds) and no growth in open file descriptors or threads after the warm-up
either. Writes benchmarks/results/soak.json.

    .venv/bin/python benchmarks/soak.py --model models/default --seconds 600

With `--hostile`, overload.py's `HostileMix` runs alongside the whole time; the well-formed
requests must still all succeed, every hostile request get its expected answer and every health
check answer SERVING, with the same memory and handle checks.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from _shared import RESULTS, ServerProcess, machine, shown, write_result
from overload import (
    HostileMix,
    capacity,
    common_args,
    open_loop,
    recovered,
    requests_for,
    serve_args,
    server_env,
    thinned,
    with_hostile,
)


def window_median(samples: list[tuple[float, float]], start: float, end: float) -> float:
    return statistics.median(m for t, m in samples if start <= t <= end)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(p)
    p.add_argument("--load", type=float, default=0.7, help="offered load, x capacity")
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    p.add_argument("--max-rss-growth", type=float, default=0.05)
    p.add_argument("--hostile", action="store_true", help="offer HostileMix alongside")
    p.add_argument("-o", "--output", type=Path, default=RESULTS / "soak.json")
    args = p.parse_args(argv)
    requests = requests_for(args.model, args.size)
    began = time.time()
    with ServerProcess(args.model, *serve_args(args), env=server_env(args)) as server:
        cap = asyncio.run(capacity(server.target, requests, args.clients, args.capacity_seconds))
        handles_before = server.handles()
        rate, mix = args.load * cap, HostileMix()
        if args.hostile:
            run, hostile = asyncio.run(
                with_hostile(server, args.model, requests, rate, args.seconds, mix, 5.0)
            )
        else:
            run = asyncio.run(open_loop(server, requests, rate, args.seconds, 5.0))
        after = recovered(server, requests[0])
        handles_after = server.handles()
    handles_warm = next(h for t, h in run.handle_samples if t >= args.warmup)
    minute = min(60.0, (args.seconds - args.warmup) / 2)
    baseline = window_median(run.rss_samples, args.warmup, args.warmup + minute)
    final = window_median(run.rss_samples, args.seconds - minute, args.seconds + 60)
    growth = (final - baseline) / baseline
    errors = run.sent - run.statuses.get("OK", 0)
    checks = {
        "zero_errors": errors == 0,
        "rss_growth_below_limit": growth < args.max_rss_growth,
        # Descriptors and threads may vary by a few (gRPC's pollers); a leak grows with requests.
        # Counted from the end of the warm-up, like memory: new shapes (the hostile mix's churn)
        # bring compiled models with their own threads, up to the compiled models' bound.
        "no_fd_or_thread_leak": all(
            handles_after[k] <= handles_warm[k] + 8 for k in ("fds", "threads")
        ),
        "recovered": after["health"] == "SERVING" and after["request_ok"],
    }
    if args.hostile:
        checks["hostile_answers_as_expected"] = not hostile.unexpected(mix)
        checks["hostile_health_always_serving"] = not hostile.health_failed
    result = {
        "command": "benchmarks/soak.py " + " ".join(argv or sys.argv[1:]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "model": shown(args.model),
        "size": args.size,
        "server": {"max_batch": args.max_batch, "max_queue": args.max_queue},
        "capacity_images_per_s": round(cap, 2),
        "load_x_capacity": args.load,
        **run.summary(),
        "errors": errors,
        "rss_mib": {
            "baseline_first_minute": round(baseline, 1),
            "final_last_minute": round(final, 1),
            "growth": round(growth, 4),
            "max": round(max(m for _, m in run.rss_samples), 1),
        },  # fmt: skip
        "rss_samples_mib": thinned(run.rss_samples),
        "handles": {
            "before": handles_before,
            "after_warmup": handles_warm,
            "after": handles_after,
        },  # fmt: skip
        **({"hostile": hostile.summary(mix)} if args.hostile else {}),
        "recovery": after,
        "checks": checks,
        "passed": all(checks.values()),
        "machine": machine(),
    }
    write_result(args.output, result, echo=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
