"""Server load benchmark: N concurrent clients against a real `p2phd serve`, batching on vs off.

Measures images/s and latency p50/p90/p99 through the server with dynamic batching on (max batch
B) and off (max batch 1), and the engine's own throughput in-process at batch B and at batch 1, so
the server's overhead shows directly (target: saturated throughput through the server >= 90% of
the engine's at the same batch size). The server runs as its own process; the clients share one
process and the machine with it, as they would on a single box. Writes
benchmarks/results/load.json and prints a Markdown table.

    .venv/bin/python benchmarks/load.py --model models/default --clients 16 --rounds 5

Without a trained package, make one of the wanted size with benchmarks/make_package.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from _shared import REPO, RESULTS, ServerProcess, free_port, latency_ms, machine, write_result

DEFAULT_OUT = RESULTS / "load.json"


def engine_throughput(args, labels, instances, batch: int) -> dict:
    """The Renderer's own images/s at `batch`, in this process, with nothing else running."""
    from p2phd.engine.core.renderer import Renderer
    from p2phd.engine.core.style import Style

    with Renderer(args.model, backend=args.backend, precision=args.precision) as r:
        lab, inst = labels[:batch], instances[:batch]
        styles = [Style(seed=i) for i in range(batch)]
        for _ in range(2):
            r.render(lab, inst, styles)
        times = []
        cpu0 = time.process_time()
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end or len(times) < 3:
            t = time.perf_counter()
            r.render(lab, inst, styles)
            times.append(time.perf_counter() - t)
        cpu = time.process_time() - cpu0
        describe = r.describe()
    per_call = float(np.median(times))
    return {
        "name": f"engine alone, batch {batch}",
        "batch": batch,
        "images_per_s": round(batch / per_call, 2),
        "cpu_ms_per_image": round(1e3 * cpu / (batch * len(times)), 2),
        **latency_ms(times),
        "backend": describe.get("backend"),
        "precision": describe.get("precision"),
    }


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


SERVER_METRICS = ("p2phd_batch_size_count", "p2phd_batch_size_sum", "p2phd_compute_seconds_sum")


def scrape(url: str, server_pid: int) -> dict[str, float]:
    """The server's counters, and the CPU seconds used so far by the server and by the clients."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    sample = {name: metric(text, name) for name in SERVER_METRICS}
    sample["server_cpu"] = process_cpu_seconds(server_pid)
    sample["client_cpu"] = time.process_time()
    return sample


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(
    send: Callable[[int, Any], Awaitable], requests: list, clients: int, window: tuple
) -> tuple[list[float], dict[str, int]]:
    """`clients` closed-loop clients until the window ends, client i sending requests i,
    i + clients, ... as `send(i, request)`: the latencies of the calls that ended inside the
    window, and the failed calls per status code."""
    import grpc

    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def client(i: int) -> None:
        k = i
        while time.perf_counter() < window[1]:
            t = time.perf_counter()
            try:
                await send(i, requests[k % len(requests)])
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] = errors.get(e.code().name, 0) + 1
                continue
            finally:
                k += clients
            end = time.perf_counter()
            if window[0] <= end <= window[1]:
                latencies.append(end - t)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, errors


async def drive(
    target: str,
    metrics_url: str,
    server_pid: int,
    requests: list,
    clients: int,
    warmup: float,
    seconds: float,
) -> dict:
    """`clients` closed-loop clients for warmup + seconds; stats over the requests completed in
    the measured window, and the server's batch and engine-time counters over that window."""
    import grpc

    from p2phd.engine.serving.wire import renderer_pb2_grpc

    channels = [grpc.aio.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", 256 << 20),
        ("grpc.max_send_message_length", 256 << 20),
    ]) for _ in range(min(clients, 4))]  # fmt: skip
    stubs = [renderer_pb2_grpc.RendererStub(c) for c in channels]
    start = time.perf_counter()
    window = (start + warmup, start + warmup + seconds)

    async def scrape_at(when: float) -> dict[str, float]:
        await asyncio.sleep(max(0.0, when - time.perf_counter()))
        return await asyncio.get_running_loop().run_in_executor(
            None, scrape, metrics_url, server_pid
        )

    samples = asyncio.gather(scrape_at(window[0]), scrape_at(window[1]))
    latencies, errors = await closed_loop(
        lambda i, request: stubs[i % len(stubs)].Render(request, timeout=120),
        requests,
        clients,
        window,
    )
    first, last = await samples
    for c in channels:
        await c.close()
    calls, images, compute = (last[k] - first[k] for k in SERVER_METRICS)
    cpu = sum(last[k] - first[k] for k in ("server_cpu", "client_cpu"))
    return {
        "images_per_s": round(len(latencies) / seconds, 2),
        # Server and client processes together: what a saturated dedicated machine divides.
        "cpu_ms_per_image": round(1e3 * cpu / images, 2) if images else float("nan"),
        **latency_ms(latencies),
        "errors": errors,
        "mean_batch": round(images / calls, 2) if calls else 0.0,
        # The engine's own speed inside the server (images per engine second), and the share of
        # the window it was rendering: the batcher keeps it fed when this is near 100%.
        "engine_in_server_images_per_s": round(images / compute, 2) if compute else 0.0,
        "engine_busy": round(compute / seconds, 3),
    }


def server_run(args, name: str, max_batch: int, delay_us: int, requests: list) -> dict:
    """Start `p2phd serve` with these batching knobs and load it with the clients."""
    metrics_port = free_port()
    serve_args = [
        "--metrics-port", str(metrics_port), "--backend", args.backend,
        "--precision", args.precision, "--max-batch", str(max_batch),
        "--max-queue-delay-us", str(delay_us), "--max-queue", str(4 * args.clients),
    ]  # fmt: skip
    with ServerProcess(args.model, *serve_args) as server:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        stats = asyncio.run(drive(server.target, url, server.proc.pid, requests, args.clients,
                                  args.warmup, args.seconds))  # fmt: skip
    return {
        "name": name,
        "batch": max_batch,
        "max_queue_delay_us": delay_us,
        "clients": args.clients,
        **stats,
    }


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput, with every round's throughput alongside."""
    ordered = sorted(runs, key=lambda r: r["images_per_s"])
    return {**ordered[len(ordered) // 2], "rounds_images_per_s": [r["images_per_s"] for r in runs]}


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | max batch | mean batch | images/s | p50 ms | p90 ms | p99 ms | CPU ms/image "
        "| vs engine (wall) | vs engine (CPU) | engine busy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(r: dict, key: str) -> str:
        return f"{min(r[key], 1.0) if key == 'engine_busy' else r[key]:.0%}" if key in r else ""

    for r in rows:
        lines.append(
            f"| {r['name']} | {r['batch']} | {r.get('mean_batch', r['batch'])} | "
            f"{r['images_per_s']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | "
            f"{r['cpu_ms_per_image']} | {pct(r, 'vs_engine')} | {pct(r, 'cpu_vs_engine')} | "
            f"{pct(r, 'engine_busy')} |"
        )
    return "\n".join(lines)


def parse_load_args(doc: str, default_out: Path, rounds: int, argv: list[str] | None):
    """The arguments of a load benchmark (this one, triton_load.py): model, clients, batching."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=REPO / "models" / "default")
    p.add_argument("--size", default="128x256", help="HxW of the label maps (default 128x256)")
    p.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per run")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-queue-delay-us", type=int, default=5000)
    p.add_argument(
        "--rounds", type=int, default=rounds, help="alternating rounds (median reported)"
    )
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="auto")
    p.add_argument("-o", "--output", type=Path, default=default_out)
    args = p.parse_args(argv)
    if not (args.model / "manifest.json").is_file():
        p.error(f"{args.model}: not a model package (make one with benchmarks/make_package.py)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_load_args(__doc__, DEFAULT_OUT, 5, argv)

    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.quality import synthetic_maps
    from p2phd.engine.serving.client import RenderItem

    h, w = (int(v) for v in args.size.lower().split("x"))
    label_nc = ModelPackage(args.model).manifest.label_nc
    n = max(args.max_batch, 8)
    labels, instances = synthetic_maps(n, h, w, label_nc, seed=1)
    requests = [
        RenderItem(labels[i], instances[i], seed=i).request(output_raw=True) for i in range(n)
    ]

    # Each round measures the engine alone right before the server at the same batch size, so
    # both see the same load from elsewhere on the machine; the ratio is taken per round and the
    # median round reported (rows show median throughputs, with every round's alongside).
    rounds: list[list[dict]] = []
    for _ in range(args.rounds):
        rounds.append([
            engine_throughput(args, labels, instances, 1),
            server_run(args, "server, batching off", 1, 0, requests),
            engine_throughput(args, labels, instances, args.max_batch),
            server_run(
                args, "server, batching on", args.max_batch, args.max_queue_delay_us, requests
            ),
        ])  # fmt: skip
    rows = [median_run([r[i] for r in rounds]) for i in range(4)]
    engine_1, off, engine_b, on = rows
    for i, row in ((1, off), (3, on)):
        ratios = sorted(r[i]["images_per_s"] / r[i - 1]["images_per_s"] for r in rounds)
        row["vs_engine"] = round(ratios[len(ratios) // 2], 3)
        row["rounds_vs_engine"] = [round(x, 3) for x in ratios]
        # CPU per image, engine alone over server + clients: the saturated throughput ratio on a
        # dedicated machine, and unlike wall-clock ratios unaffected by other load on this one.
        cpu = sorted(r[i - 1]["cpu_ms_per_image"] / r[i]["cpu_ms_per_image"] for r in rounds)
        row["cpu_vs_engine"] = round(cpu[len(cpu) // 2], 3)
        row["rounds_cpu_vs_engine"] = [round(x, 3) for x in cpu]

    result = {
        "command": "benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model),
        "size": [h, w],
        "machine": machine(),
        "backend": engine_b["backend"],
        "precision": engine_b["precision"],
        "runs": rows,
        "target_met": on["cpu_vs_engine"] >= 0.9,
    }
    write_result(args.output, result)
    print(markdown(rows))
    print(f"\nbackend {result['backend']} {result['precision']}, {h}x{w}, {args.clients} clients; "
          f"wrote {args.output}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
