"""`p2phd serve` against NVIDIA Triton Inference Server, side by side: the same package and Renderer
behind each, the same KServe v2 clients, the same machine, batching on and off.

Each run starts one server as its own process tree (`p2phd serve`, or `p2phd triton`: tritonserver
and its Python-backend stub), drives it with N closed-loop clients sending the same
ModelInferRequests (label + instance, raw tensors) over gRPC, and reports images/s, latency p50/
p90/p99, CPU per image (the server's whole process tree plus the clients, as load.py counts it)
and the mean batch from the server's own KServe ModelStatistics. Rounds alternate which server
goes first; the median round is reported. Writes benchmarks/results/triton_load.json and prints a
Markdown table.

    .venv/bin/python benchmarks/triton_load.py --model models/default --clients 16 --rounds 3

Needs the tritonserver that `make test` installs (nvidia-pytriton, --no-deps).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared import RESULTS, ServerProcess, latency_ms, machine, write_result  # noqa: E402
from load import closed_loop, median_run, parse_load_args, process_cpu_seconds  # noqa: E402

DEFAULT_OUT = RESULTS / "triton_load.json"
SERVERS = ("p2phd serve", "p2phd triton")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and all its descendants (Triton's stub is a grandchild)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        cpu = process_cpu_seconds(p)
        total += 0.0 if cpu != cpu else cpu  # a process that just exited counts nothing
        todo += children.get(p, [])
    return total


def machine_cpu_seconds() -> float:
    """CPU seconds all processes have used, from /proc/stat (user+nice+system+irq+softirq)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6))
    return busy / os.sysconf("SC_CLK_TCK")


def requests_for(model: Path, h: int, w: int, n: int) -> list:
    from p2phd.engine.core.package import ModelPackage
    from p2phd.engine.core.quality import synthetic_maps
    from p2phd.engine.serving.wire import grpc_service_pb2 as pb

    labels, instances = synthetic_maps(n, h, w, ModelPackage(model).manifest.label_nc, seed=1)
    out = []
    for label, instance in zip(labels, instances, strict=True):
        r = pb.ModelInferRequest(model_name="p2phd")
        r.inputs.add(name="label", datatype="UINT8", shape=[1, h, w])
        r.inputs.add(name="instance", datatype="INT32", shape=[1, h, w])
        r.raw_input_contents.extend([label.tobytes(), instance.astype(np.int32).tobytes()])
        out.append(r)
    return out


async def statistics(stub) -> tuple[int, int]:
    """(images, engine calls) so far, from the server's KServe ModelStatistics."""
    from p2phd.engine.serving.wire import grpc_service_pb2 as pb

    s = (await stub.ModelStatistics(pb.ModelStatisticsRequest(name="p2phd"))).model_stats[0]
    return s.inference_count, s.execution_count


async def drive(target: str, server_pid: int, requests: list, args) -> dict:
    """`args.clients` closed-loop KServe clients for warmup + seconds; stats over the window."""
    import grpc

    from p2phd.engine.serving.wire import grpc_service_pb2_grpc

    options = [("grpc.max_receive_message_length", 256 << 20),
               ("grpc.max_send_message_length", 256 << 20)]  # fmt: skip
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(4)]
    stubs = [grpc_service_pb2_grpc.GRPCInferenceServiceStub(c) for c in channels]
    start = time.perf_counter()
    window = (start + args.warmup, start + args.warmup + args.seconds)

    async def sample_at(when: float) -> tuple:
        await asyncio.sleep(max(0.0, when - time.perf_counter()))
        cpu = tree_cpu_seconds(server_pid) + time.process_time()
        return cpu, machine_cpu_seconds(), *(await statistics(stubs[0]))

    samples = asyncio.gather(sample_at(window[0]), sample_at(window[1]))
    latencies, errors = await closed_loop(
        lambda i, request: stubs[i % len(stubs)].ModelInfer(request, timeout=120),
        requests,
        args.clients,
        window,
    )
    (cpu0, all0, images0, calls0), (cpu1, all1, images1, calls1) = await samples
    for c in channels:
        await c.close()
    images, calls = images1 - images0, calls1 - calls0
    return {
        "images_per_s": round(len(latencies) / args.seconds, 2),
        "cpu_ms_per_image": round(1e3 * (cpu1 - cpu0) / images, 2) if images else float("nan"),
        **latency_ms(latencies),
        "errors": errors,
        "mean_batch": round(images / calls, 2) if calls else 0.0,
        # The machine's CPU used by everything else, as a share of all its cores.
        "others_cpu_share": round(
            ((all1 - all0) - (cpu1 - cpu0)) / ((os.cpu_count() or 1) * args.seconds), 3
        ),
    }


def run(args, server: str, max_batch: int, delay_us: int, requests: list) -> dict:
    """Start `server` with these batching knobs, wait until it renders, and load it."""
    import grpc

    from p2phd.engine.serving.wire import grpc_service_pb2_grpc

    command = "serve" if server == "p2phd serve" else "triton"
    knobs = ["--backend", args.backend, "--precision", args.precision,
             "--max-batch", str(max_batch), "--max-queue-delay-us", str(delay_us)]  # fmt: skip
    with ServerProcess(args.model, *knobs, command=command, start_timeout=300,
                       stop_timeout=90) as process:  # fmt: skip
        with grpc.insecure_channel(process.target) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            end = time.monotonic() + 300
            while True:  # ready means the model answers, for both servers
                try:
                    stub.ModelInfer(requests[0], timeout=60)
                    break
                except grpc.RpcError:
                    if process.proc.poll() is not None or time.monotonic() > end:
                        raise RuntimeError(f"{server} did not start") from None
                    time.sleep(0.5)
        stats = asyncio.run(drive(process.target, process.proc.pid, requests, args))
    batching = "on" if max_batch > 1 else "off"
    return {"name": f"{server}, batching {batching}", "server": server, "batch": max_batch,
            "max_queue_delay_us": delay_us, "clients": args.clients, **stats}  # fmt: skip


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | max batch | mean batch | images/s | p50 ms | p90 ms | p99 ms | CPU ms/image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['batch']} | {r['mean_batch']} | {r['images_per_s']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['cpu_ms_per_image']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_load_args(__doc__, DEFAULT_OUT, 3, argv)

    h, w = (int(v) for v in args.size.lower().split("x"))
    requests = requests_for(args.model, h, w, max(args.max_batch, 8))
    knobs = [(1, 0), (args.max_batch, args.max_queue_delay_us)]
    runs: dict[tuple, list[dict]] = {}
    for k in range(args.rounds):
        for max_batch, delay in knobs:
            for server in SERVERS if k % 2 == 0 else SERVERS[::-1]:
                row = run(args, server, max_batch, delay, requests)
                runs.setdefault((server, max_batch), []).append(row)
                print(f"round {k + 1}: {row['name']}: {row['images_per_s']} images/s, "
                      f"p99 {row['p99_ms']} ms", flush=True)  # fmt: skip
    rows = [median_run(runs[(s, b)]) for b, _ in knobs for s in SERVERS]
    others = max(r["others_cpu_share"] for r in rows)
    result = {
        "command": "benchmarks/triton_load.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(args.model),
        "size": [h, w],
        "machine": machine(),
        "note": f"shared, noisy machine: other processes used up to {others:.0%} of its CPU "
        "during a run; CPU ms/image is the robust comparison, images/s and latency moved with "
        "their load"
        if others > 0.05
        else "quiet machine: other processes used under 5% of its CPU",
        "runs": rows,
    }
    write_result(args.output, result)
    print(markdown(rows))
    print(f"\n{h}x{w}, {args.clients} clients, {result['machine']['cpu']}; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
