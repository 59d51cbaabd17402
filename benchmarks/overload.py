"""Overload benchmark: a real `p2phd serve` offered 4x the load it can serve, for 60 seconds.

First the server's capacity is measured (closed-loop clients keeping it saturated), then requests
arrive open loop (Poisson, at `--load` x capacity) for `--seconds`. Passes when every answer is OK
or RESOURCE_EXHAUSTED (no timeouts, no INTERNAL), the server's resident memory stays bounded
(peak at most `--rss-budget-mib` above its level after warm-up, and no higher in the second half
of the run than in the first: a plateau, not a leak), and it recovers fully afterwards (health
SERVING, a normal request succeeds). Writes benchmarks/results/overload.json.

    .venv/bin/python benchmarks/overload.py --model models/default --load 4 --seconds 60

With `--hostile`, `--rounds` pairs of open-loop runs are made on the same server, clean and then
with a hostile mix alongside (`HostileMix`: thin strips the size policy would pad 32-fold, shape
churn, streams that never send, styles of thousands of entries for ids not in the image, and
health checks throughout); alternating keeps a noisy machine's drift from favouring either. It
then also passes only when every health check answered SERVING, every hostile request got its
expected answer, the well-formed requests' goodput in the hostile runs is at least
`--min-goodput` (0.8) of the clean runs', and the server's RSS stays within the budget plus the
compiled models' own bound (`--engine-memory-mb`, which shape churn fills by design) and ends on
a plateau (the last hostile round's peak within 5% of the round before).

    .venv/bin/python benchmarks/overload.py --hostile --seconds 60 \
        -o benchmarks/results/overload-hostile.json

`benchmarks/soak.py` drives the same server at 70% load for 10 minutes with this module's parts.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _shared import REPO, RESULTS, ServerProcess, latency_ms, machine, shown, write_result

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]


def requests_for(model: Path, size: str, n: int = 16) -> list:
    """`n` RenderRequests of synthetic maps of `size` (HxW) for the package at `model`."""
    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.quality import synthetic_maps
    from p2phd.engine.serving.client import RenderItem

    h, w = (int(v) for v in size.lower().split("x"))
    label_nc = ModelPackage(model).manifest.label_nc
    labels, instances = synthetic_maps(n, h, w, label_nc, seed=1)
    return [RenderItem(labels[i], instances[i], seed=i).request() for i in range(n)]


async def capacity(target: str, requests: list, clients: int, seconds: float) -> float:
    """Images/s the server sustains with `clients` closed-loop clients (after 2 s of warm-up)."""
    import grpc

    from p2phd.engine.serving.wire import renderer_pb2_grpc

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
    handle_samples: list[tuple[float, dict]] = field(default_factory=list)  # (t, fds/threads)
    error_details: dict[str, str] = field(default_factory=dict)  # one message per status

    def summary(self) -> dict:
        ok = self.statuses.get("OK", 0)
        return {
            "offered_per_s": round(self.offered_per_s, 2),
            "seconds": self.seconds,
            "sent": self.sent,
            "statuses": dict(sorted(self.statuses.items())),
            "ok_per_s": round(ok / self.seconds, 2),
            "ok_latency": latency_ms(self.latencies),
            "error_details": self.error_details,
        }


async def open_loop(server: ServerProcess, requests: list, rate: float, seconds: float,
                    rss_every: float = 1.0, seed: int = 0) -> OpenLoopResult:  # fmt: skip
    """Send requests as a Poisson process at `rate`/s for `seconds`, sampling the server's RSS;
    waits for every answer (each request has a 60 s deadline)."""
    import grpc

    from p2phd.engine.serving.wire import renderer_pb2_grpc

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
                t = round(time.perf_counter() - start, 1)
                result.rss_samples.append((t, server.rss()))
                result.handle_samples.append((t, server.handles()))
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


@dataclass
class HostileMix:
    """Hostile traffic offered alongside the well-formed load, per second (idle streams: held
    open at once, reopened when the server ends them), and what each kind must be answered."""

    strips_per_s: float = 1.0  # raw [1, 2 MiB] label + instance: 67 M pixels once padded
    churn_per_s: float = 1.0  # a new small size each time (a shape the engine has not seen)
    styles_per_s: float = 1.0  # 5000 instance_cluster entries for ids absent from the image
    idle_streams: int = 64  # RenderStreams that never send
    health_per_s: float = 2.0
    expected = {
        # Refused by their size, or at once, before decoding, while the queue is full.
        "strip": {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"},
        "style": {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"},
        "churn": {"OK", "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"},
        # Ended by the server's idle timeout (the client sees DEADLINE_EXCEEDED, or CANCELLED
        # while its request iterator waits), or by the run's end.
        "idle_stream": {"DEADLINE_EXCEEDED", "CANCELLED", "OK"},
    }


@dataclass
class HostileResult:
    """Answers to the hostile traffic by kind and status, and the health checks' outcome."""

    statuses: dict[str, dict[str, int]] = field(default_factory=dict)
    health_ok: int = 0
    health_failed: dict[str, int] = field(default_factory=dict)
    health_latencies: list[float] = field(default_factory=list)

    def count(self, kind: str, status: str) -> None:
        by_status = self.statuses.setdefault(kind, {})
        by_status[status] = by_status.get(status, 0) + 1

    def unexpected(self, mix: HostileMix) -> dict[str, dict[str, int]]:
        bad = {
            kind: {s: n for s, n in by_status.items() if s not in mix.expected[kind]}
            for kind, by_status in self.statuses.items()
        }
        return {kind: statuses for kind, statuses in bad.items() if statuses}

    def summary(self, mix: HostileMix) -> dict:
        return {
            "offered": dict(vars(mix)),
            "statuses": self.statuses,
            "unexpected": self.unexpected(mix),
            "health": {"serving": self.health_ok, "failed": self.health_failed,
                       "latency": latency_ms(self.health_latencies)},
        }  # fmt: skip


def hostile_requests(model: Path) -> dict:
    """The fixed hostile requests (a thin strip, an oversized style) and a maker of churn."""
    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.quality import synthetic_maps
    from p2phd.engine.serving.client import RenderItem
    from p2phd.engine.serving.wire import renderer_pb2 as pb

    label_nc = ModelPackage(model).manifest.label_nc
    width = 2 << 20
    strip = pb.RenderRequest(
        label=pb.Map(raw=pb.RawArray(shape=[1, width], dtype=pb.DTYPE_UINT8,
                                     data=bytes([1]) * width)),
        instance=pb.Map(raw=pb.RawArray(shape=[1, width], dtype=pb.DTYPE_INT32,
                                        data=np.ones(width, "<i4").tobytes())),
    )  # fmt: skip
    labels, instances = synthetic_maps(1, 64, 64, label_nc, seed=3)
    style = RenderItem(labels[0], instances[0]).request()
    explicit = pb.ExplicitStyle()
    for i in range(5000):
        explicit.instance_cluster[10**6 + i] = 0
    style.style.CopyFrom(pb.Style(explicit=explicit))

    def churn(rng: random.Random) -> pb.RenderRequest:
        h, w = rng.randint(8, 200), rng.randint(8, 200)
        lab, inst = synthetic_maps(1, h, w, label_nc, seed=rng.randrange(1 << 30))
        return RenderItem(lab[0], inst[0]).request()

    return {"strip": strip, "style": style, "churn": churn}


async def hostile_load(target: str, model: Path, seconds: float, mix: HostileMix,
                       seed: int = 1) -> HostileResult:  # fmt: skip
    """Offer `mix` to the server at `target` for `seconds` (run alongside `open_loop`)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from p2phd.engine.serving.wire import renderer_pb2_grpc

    made = hostile_requests(model)
    result = HostileResult()
    rng = random.Random(seed)
    end = time.perf_counter() + seconds
    options = [*CHANNEL_OPTIONS, ("grpc.max_send_message_length", 64 << 20)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = renderer_pb2_grpc.RendererStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def call(kind: str, request) -> None:
            try:
                await stub.Render(request, timeout=60)
                result.count(kind, "OK")
            except grpc.aio.AioRpcError as e:
                result.count(kind, e.code().name)

        async def every(rate: float, send) -> None:
            tasks: set[asyncio.Task] = set()
            while rate > 0 and time.perf_counter() < end:
                await asyncio.sleep(rng.expovariate(rate))
                task = asyncio.get_running_loop().create_task(send())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(set(tasks))

        async def check_health() -> None:
            t = time.perf_counter()
            try:
                r = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
            except grpc.aio.AioRpcError as e:
                status = e.code().name
            if status == "SERVING":
                result.health_ok += 1
                result.health_latencies.append(time.perf_counter() - t)
            else:
                result.health_failed[status] = result.health_failed.get(status, 0) + 1

        async def idle_stream() -> None:
            async def silent():
                await asyncio.sleep(max(0.0, end - time.perf_counter()))
                return
                yield  # an async generator that sends nothing

            while time.perf_counter() < end:
                try:
                    async for _ in stub.RenderStream(silent(), timeout=end - time.perf_counter()):
                        pass
                    status = "OK"
                except grpc.aio.AioRpcError as e:
                    status = e.code().name
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise
                    # grpc.aio's way to report a call the server ended while the request
                    # iterator was still waiting to send
                    status = "CANCELLED"
                result.count("idle_stream", status)
                if status not in mix.expected["idle_stream"]:
                    await asyncio.sleep(1.0)  # refused at once: do not spin

        await asyncio.gather(
            every(mix.strips_per_s, lambda: call("strip", made["strip"])),
            every(mix.styles_per_s, lambda: call("style", made["style"])),
            every(mix.churn_per_s, lambda: call("churn", made["churn"](rng))),
            every(mix.health_per_s, check_health),
            *(idle_stream() for _ in range(mix.idle_streams)),
        )
    return result


def recovered(server: ServerProcess, request) -> dict:
    """After the load: health says SERVING and a normal request is rendered."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from p2phd.engine.serving.wire import renderer_pb2_grpc

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


def thinned(samples: list[tuple[float, float]], keep: int = 60) -> list[tuple[float, float]]:
    """At most about `keep` evenly spaced (t, MiB) samples, rounded, for the result file."""
    step = max(1, len(samples) // keep)
    return [(t, round(m, 1)) for t, m in samples[::step]]


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=REPO / "models" / "default")
    p.add_argument("--size", default="128x256", help="HxW of the label maps (default 128x256)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-queue", type=int, default=64)
    p.add_argument("--clients", type=int, default=16, help="closed-loop clients for capacity")
    p.add_argument("--capacity-seconds", type=float, default=10.0)
    p.add_argument("--stream-idle-timeout", type=float, default=20.0,
                   help="the server's; short, so idle streams cycle within a run")  # fmt: skip
    p.add_argument("--engine-memory-mb", type=int, default=256,
                   help="the server's bound on compiled models ($P2PHD_ENGINE_MEMORY_MB): "
                   "small, so shape churn reaches it within a run")  # fmt: skip


def server_env(args: argparse.Namespace) -> dict[str, str]:
    return {"P2PHD_ENGINE_MEMORY_MB": str(args.engine_memory_mb)}


def serve_args(args: argparse.Namespace) -> list[str]:
    return ["--max-batch", str(args.max_batch), "--max-queue", str(args.max_queue),
            "--stream-idle-timeout", str(args.stream_idle_timeout)]  # fmt: skip


async def with_hostile(server: ServerProcess, model: Path, requests: list, rate: float,
                       seconds: float, mix: HostileMix,
                       rss_every: float = 1.0) -> tuple[OpenLoopResult, HostileResult]:  # fmt: skip
    """`open_loop` with `mix` offered alongside for the same `seconds`."""
    run, hostile = await asyncio.gather(
        open_loop(server, requests, rate, seconds, rss_every),
        hostile_load(server.target, model, seconds, mix),
    )
    return run, hostile


def rss_halves(run: OpenLoopResult, seconds: float) -> tuple[float, float]:
    """The peak RSS in the first and in the second half of a run (MiB)."""
    half = seconds / 2
    return (max(m for t, m in run.rss_samples if t <= half),
            max(m for t, m in run.rss_samples if t > half))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_args(p)
    p.add_argument("--load", type=float, default=4.0, help="offered load, x capacity")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument(
        "--rss-budget-mib", type=float, default=256.0,
        help="peak RSS under overload may exceed the warm RSS by this much (MiB)",
    )  # fmt: skip
    p.add_argument("--hostile", action="store_true", help="clean and hostile runs, alternated")
    p.add_argument("--rounds", type=int, default=3,
                   help="with --hostile: clean/hostile pairs of --seconds each (a noisy "
                   "machine's drift then touches both alike)")  # fmt: skip
    p.add_argument("--min-goodput", type=float, default=0.8,
                   help="hostile runs' OK/s at least this x the clean runs'")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, default=RESULTS / "overload.json")
    args = p.parse_args(argv)
    requests = requests_for(args.model, args.size)
    mix = HostileMix()
    began = time.time()
    machine_before = machine()
    clean_runs, hostile_runs = [], []
    with ServerProcess(args.model, *serve_args(args), env=server_env(args)) as server:
        cap = asyncio.run(capacity(server.target, requests, args.clients, args.capacity_seconds))
        warm_rss = server.rss()
        rate = args.load * cap
        for _ in range(args.rounds if args.hostile else 1):
            clean_runs.append(asyncio.run(open_loop(server, requests, rate, args.seconds)))
            if args.hostile:
                hostile_runs.append(asyncio.run(
                    with_hostile(server, args.model, requests, rate, args.seconds, mix)
                ))  # fmt: skip
        after = recovered(server, requests[0])
        end_rss = server.rss()
    run = clean_runs[0]
    peak_rss = max(m for _, m in run.rss_samples)  # the first clean run: before any hostile
    first_half, second_half = rss_halves(run, args.seconds)
    statuses = {s for r in clean_runs for s in r.statuses}
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
        "server": {
            "max_batch": args.max_batch,
            "max_queue": args.max_queue,
            "stream_idle_timeout": args.stream_idle_timeout,
            "engine_memory_mb": args.engine_memory_mb,
        },  # fmt: skip
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
    }
    if args.hostile:
        result.update(hostile_summary(args, mix, warm_rss, clean_runs, hostile_runs, checks))
    result.update({
        "recovery": after,
        "checks": checks,
        "passed": all(checks.values()),
        "machine": {**machine(), "load_average_before": machine_before["load_average"]},
    })  # fmt: skip
    write_result(args.output, result, echo=True)
    return 0 if result["passed"] else 1


def hostile_summary(args: argparse.Namespace, mix: HostileMix, warm_rss: float,
                    clean_runs: list[OpenLoopResult],
                    hostile_runs: list[tuple[OpenLoopResult, HostileResult]],
                    checks: dict) -> dict:  # fmt: skip
    """The hostile rounds against the clean ones: goodput, answers, health and memory (adds
    its checks to `checks`)."""
    clean_ok = sum(r.statuses.get("OK", 0) for r in clean_runs)
    hostile_ok = sum(r.statuses.get("OK", 0) for r, _ in hostile_runs)
    goodput = hostile_ok / max(clean_ok, 1)
    # Memory over the hostile rounds in order: it ends on a plateau when the last round's peak
    # is within 5% of the one before. Shape churn fills the compiled models' own bound
    # (--engine-memory-mb) by design, so the budget adds it.
    peaks = [max(m for _, m in r.rss_samples) for r, _ in hostile_runs]
    budget = warm_rss + args.rss_budget_mib + args.engine_memory_mb
    mixes = [h for _, h in hostile_runs]
    checks.update({
        "hostile_well_formed_only_ok_or_resource_exhausted": all(
            set(r.statuses) <= {"OK", "RESOURCE_EXHAUSTED"} for r, _ in hostile_runs),
        "hostile_answers_as_expected": not any(h.unexpected(mix) for h in mixes),
        "hostile_health_always_serving": all(not h.health_failed and h.health_ok for h in mixes),
        "hostile_goodput": goodput >= args.min_goodput,
        "hostile_rss_within_budget": max(peaks) <= budget,
        "hostile_rss_plateau": len(peaks) > 1 and peaks[-1] <= peaks[-2] * 1.05,
    })  # fmt: skip
    return {
        "hostile": {
            "rounds": args.rounds,
            "clean_ok_per_s": [r.summary()["ok_per_s"] for r in clean_runs],
            "hostile_ok_per_s": [r.summary()["ok_per_s"] for r, _ in hostile_runs],
            "goodput_vs_clean": round(goodput, 3),
            "well_formed_last_round": hostile_runs[-1][0].summary(),
            "mix": [h.summary(mix) for h in mixes],
            "rss_peak_mib_per_round": [round(p, 1) for p in peaks],
            "rss_budget_mib": round(budget, 1),
            "rss_samples_mib_last_round": thinned(hostile_runs[-1][0].rss_samples),
        }
    }


if __name__ == "__main__":
    sys.exit(main())
