"""Overload benchmark: a real `p2phd serve` offered 4x the load it can serve, for 60 seconds.

First the server's capacity is measured (closed-loop clients keeping it saturated), then requests
arrive open loop (Poisson, at `--load` x capacity) for `--seconds`. Passes when every answer is OK
or RESOURCE_EXHAUSTED (no timeouts, no INTERNAL), the server's resident memory stays bounded
(peak at most `--rss-budget-mib` above its level after warm-up, and no higher in the second half
of the run than in the first: a plateau, not a leak), and it recovers fully afterwards (health
SERVING, a normal request succeeds). Writes benchmarks/results/overload.json.

    .venv/bin/python benchmarks/overload.py --model models/default --load 4 --seconds 60

`benchmarks/soak.py` drives the same server at 70% load for 10 minutes with this module's parts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """A process's resident memory (MiB), from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class ServerProcess:
    """`p2phd serve` in its own process on 127.0.0.1, stopped with SIGTERM on exit."""

    def __init__(self, model: Path, *serve_args: str):
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "p2phd.engine.cli", "serve", str(model),
               "--port", str(self.port), *serve_args]  # fmt: skip
        # The server's log goes to a file: a pipe nobody reads would block it once full.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)

    def __enter__(self) -> ServerProcess:
        import grpc

        try:
            with grpc.insecure_channel(self.target) as channel:
                grpc.channel_ready_future(channel).result(timeout=120)
        except grpc.FutureTimeoutError:
            self.__exit__()
            self.log.seek(0)
            raise RuntimeError(f"server did not start: {self.log.read().decode()}") from None
        return self

    def rss(self) -> float:
        return rss_mib(self.proc.pid)

    def handles(self) -> dict[str, int]:
        """Open file descriptors and threads of the server: a leak of either shows over time."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        threads = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("Threads:"))
        return {"fds": len(os.listdir(f"/proc/{self.proc.pid}/fd")), "threads": threads}

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def requests_for(model: Path, size: str, n: int = 16) -> list:
    """`n` RenderRequests of synthetic maps of `size` (HxW) for the package at `model`."""
    from p2phd.engine.client import RenderItem
    from p2phd.engine.package import ModelPackage
    from p2phd.engine.quality import synthetic_maps

    h, w = (int(v) for v in size.lower().split("x"))
    label_nc = ModelPackage(model).manifest.label_nc
    labels, instances = synthetic_maps(n, h, w, label_nc, seed=1)
    return [RenderItem(labels[i], instances[i], seed=i).request() for i in range(n)]


def percentiles_ms(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    p50, p99 = np.percentile(np.asarray(latencies) * 1e3, [50, 99])
    return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1),
            "max_ms": round(max(latencies) * 1e3, 1)}  # fmt: skip


async def capacity(target: str, requests: list, clients: int, seconds: float) -> float:
    """Images/s the server sustains with `clients` closed-loop clients (after 2 s of warm-up)."""
    import grpc

    from p2phd.engine.wire import renderer_pb2_grpc

    async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
        stub = renderer_pb2_grpc.RendererStub(channel)
        start = time.perf_counter()
        window = (start + 2.0, start + 2.0 + seconds)
        done = 0

        async def client(i: int) -> None:
            nonlocal done
            while time.perf_counter() < window[1]:
                await stub.Render(requests[i % len(requests)], timeout=120)
                if window[0] <= time.perf_counter() <= window[1]:
                    done += 1
                i += clients

        await asyncio.gather(*(client(i) for i in range(clients)))
    return done / seconds


@dataclass
class OpenLoopResult:
    """What an open-loop run saw: answers by status, OK latencies, server RSS samples."""

    offered_per_s: float
    seconds: float
    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (t seconds, MiB)
    error_details: dict[str, str] = field(default_factory=dict)  # one message per status

    def summary(self) -> dict:
        ok = self.statuses.get("OK", 0)
        return {
            "offered_per_s": round(self.offered_per_s, 2),
            "seconds": self.seconds,
            "sent": self.sent,
            "statuses": dict(sorted(self.statuses.items())),
            "ok_per_s": round(ok / self.seconds, 2),
            "ok_latency": percentiles_ms(self.latencies),
            "error_details": self.error_details,
        }


async def open_loop(server: ServerProcess, requests: list, rate: float, seconds: float,
                    rss_every: float = 1.0, seed: int = 0) -> OpenLoopResult:  # fmt: skip
    """Send requests as a Poisson process at `rate`/s for `seconds`, sampling the server's RSS;
    waits for every answer (each request has a 60 s deadline)."""
    import grpc

    from p2phd.engine.wire import renderer_pb2_grpc

    result = OpenLoopResult(rate, seconds)
    rng = random.Random(seed)
    async with grpc.aio.insecure_channel(server.target, options=CHANNEL_OPTIONS) as channel:
        stub = renderer_pb2_grpc.RendererStub(channel)
        tasks: set[asyncio.Task] = set()

        async def one(request) -> None:
            t = time.perf_counter()
            try:
                await stub.Render(request, timeout=60)
                status = "OK"
                result.latencies.append(time.perf_counter() - t)
            except grpc.aio.AioRpcError as e:
                status = e.code().name
                result.error_details.setdefault(status, e.details() or "")
            result.statuses[status] = result.statuses.get(status, 0) + 1

        async def sample_rss() -> None:
            while True:
                result.rss_samples.append((round(time.perf_counter() - start, 1), server.rss()))
                await asyncio.sleep(rss_every)

        start = time.perf_counter()
        sampler = asyncio.get_running_loop().create_task(sample_rss())
        due = start
        while due < start + seconds:
            due += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.get_running_loop().create_task(
                one(requests[result.sent % len(requests)])
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            result.sent += 1
        if tasks:
            await asyncio.wait(set(tasks))
        sampler.cancel()
        result.rss_samples.append((round(time.perf_counter() - start, 1), server.rss()))
    return result


def recovered(server: ServerProcess, request) -> dict:
    """After the load: health says SERVING and a normal request is rendered."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from p2phd.engine.wire import renderer_pb2_grpc

    with grpc.insecure_channel(server.target, options=CHANNEL_OPTIONS) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        t = time.perf_counter()
        response = renderer_pb2_grpc.RendererStub(channel).Render(request, timeout=60)
        latency = time.perf_counter() - t
    return {
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
        "request_ok": bool(response.png or response.raw.data),
        "request_ms": round(latency * 1e3, 1),
    }


def machine() -> dict:
    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}  # fmt: skip


def shown(path: Path) -> str:
    """A path as the result file shows it: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def thinned(samples: list[tuple[float, float]], keep: int = 60) -> list[tuple[float, float]]:
    """At most about `keep` evenly spaced (t, MiB) samples, rounded, for the result file."""
    step = max(1, len(samples) // keep)
    return [(t, round(m, 1)) for t, m in samples[::step]]


def write_result(path: Path, result: dict) -> None:
    from p2phd.engine.atomic import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(result, indent=2).encode() + b"\n")
    print(json.dumps(result, indent=2))


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=REPO / "models" / "default")
    p.add_argument("--size", default="128x256", help="HxW of the label maps (default 128x256)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--clients", type=int, default=16, help="closed-loop clients for capacity")
    p.add_argument("--capacity-seconds", type=float, default=10.0)


def serve_args(args: argparse.Namespace) -> list[str]:
    return ["--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(p)
    p.add_argument("--load", type=float, default=4.0, help="offered load, x capacity")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument(
        "--rss-budget-mib", type=float, default=256.0,
        help="peak RSS under overload may exceed the warm RSS by this much (MiB)",
    )  # fmt: skip
    p.add_argument("-o", "--output", type=Path, default=RESULTS / "overload.json")
    args = p.parse_args(argv)
    requests = requests_for(args.model, args.size)
    began = time.time()
    with ServerProcess(args.model, *serve_args(args)) as server:
        cap = asyncio.run(capacity(server.target, requests, args.clients, args.capacity_seconds))
        warm_rss = server.rss()
        run = asyncio.run(open_loop(server, requests, args.load * cap, args.seconds))
        after = recovered(server, requests[0])
        end_rss = server.rss()
    peak_rss = max(m for _, m in run.rss_samples)
    half = args.seconds / 2
    first_half = max(m for t, m in run.rss_samples if t <= half)
    second_half = max(m for t, m in run.rss_samples if t > half)
    statuses = set(run.statuses)
    checks = {
        "only_ok_or_resource_exhausted": statuses <= {"OK", "RESOURCE_EXHAUSTED"},
        "rss_within_budget": peak_rss <= warm_rss + args.rss_budget_mib,
        "rss_plateau": second_half <= first_half * 1.05,
        "recovered": after["health"] == "SERVING" and after["request_ok"],
    }
    result = {
        "command": "benchmarks/overload.py " + " ".join(argv or sys.argv[1:]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "model": shown(args.model),
        "size": args.size,
        "server": {"max_batch": args.max_batch, "max_queue": args.max_queue},
        "capacity_images_per_s": round(cap, 2),
        "load_x_capacity": args.load,
        **run.summary(),
        "rss_mib": {
            "warm": round(warm_rss, 1),
            "peak_first_half": round(first_half, 1),
            "peak_second_half": round(second_half, 1),
            "end": round(end_rss, 1),
        },
        "rss_samples_mib": thinned(run.rss_samples),
        "recovery": after,
        "checks": checks,
        "passed": all(checks.values()),
        "machine": machine(),
    }
    write_result(args.output, result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
