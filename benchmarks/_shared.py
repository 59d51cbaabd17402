"""What the benchmark scripts share: a free port, a server in its own process, latency
percentiles, the machine's description and the results writer (benchmarks/results/*.json)."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SAMPLES = REPO.parent / "shared" / "data" / "cityscapes-sample"
LABEL_NC, FEATURES = 35, 3  # Cityscapes classes; the pooled encoder features the kernels time


def cityscapes_frames(count: int, samples: Path = SAMPLES) -> tuple[str, list]:
    """(source, [(instances [1,H,W], labels uint8 [1,H,W])]): the first `count` real frames in
    `samples`, else synthetic blocky maps with ~25 instances of Cityscapes-style ids."""
    from PIL import Image

    paths = sorted((samples / "test_inst").glob("*_instanceIds.png"))[:count]
    if paths:
        pairs = []
        for path in paths:
            label = samples / "test_label" / path.name.replace("instanceIds", "labelIds")
            pairs.append((np.asarray(Image.open(path))[None], np.asarray(Image.open(label))[None]))
        return f"cityscapes ({samples})", pairs
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(count):  # ~25 instances in 64x64 blocks
        ids = rng.choice(rng.integers(0, 34000, size=25), size=(1, 16, 32))
        big = ids.repeat(64, 1).repeat(64, 2).astype(np.int32)
        pairs.append((big, (big // 1000 % LABEL_NC).astype(np.uint8)))
    return "synthetic (samples absent)", pairs


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
    """`p2phd COMMAND MODEL --port PORT ARGS...` (serve, triton) in its own process on 127.0.0.1;
    `with` waits until its gRPC port answers and stops it with SIGTERM at the end (SIGKILL after
    `stop_timeout` s), reaped either way."""

    def __init__(self, model: Path, *args: str, command: str = "serve",
                 env: dict[str, str] | None = None, stop_timeout: float = 60.0,
                 start_timeout: float = 120.0):  # fmt: skip
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.stop_timeout, self.start_timeout = stop_timeout, start_timeout
        self.command = [sys.executable, "-m", "p2phd.engine.apps.cli", command, str(model),
                        "--port", str(self.port), *args]  # fmt: skip
        # The server's log goes to a file: a pipe nobody reads would block it once full.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=self.log,
                                     env={**os.environ, **(env or {})})  # fmt: skip

    def __enter__(self) -> ServerProcess:
        import grpc

        try:
            with grpc.insecure_channel(self.target) as channel:
                grpc.channel_ready_future(channel).result(timeout=self.start_timeout)
        except grpc.FutureTimeoutError:
            self.log.seek(0)
            log = self.log.read().decode(errors="replace")
            self.__exit__()
            raise RuntimeError(f"{' '.join(self.command)} did not start: {log}") from None
        return self

    def rss(self) -> float:
        return rss_mib(self.proc.pid)

    def handles(self) -> dict[str, int]:
        """Open file descriptors and threads of the server: a leak of either shows over time."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        threads = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("Threads:"))
        return {"fds": len(os.listdir(f"/proc/{self.proc.pid}/fd")), "threads": threads}

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)  # the server finishes its work in flight
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def latency_ms(seconds: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 and max of latencies given in seconds, in ms (None when there are none)."""
    keys = ("p50_ms", "p90_ms", "p99_ms", "max_ms")
    if not seconds:
        return dict.fromkeys(keys)
    values = np.percentile(np.asarray(seconds) * 1e3, [50, 90, 99, 100])
    return {k: round(float(v), 2) for k, v in zip(keys, values, strict=True)}


def machine() -> dict:
    """The machine a result was measured on, with its load average at the time of the call."""
    from p2phd.engine.apps.bench.machine import cpu_model

    return {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()]}  # fmt: skip


def shown(path: Path) -> str:
    """A path as a result file shows it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def write_result(path: Path, result: dict, *, echo: bool = False) -> None:
    """Write `result` as indented JSON, atomically (a reader never sees half a file); `echo`
    prints it too."""
    from p2phd.common.atomic import atomic_write_bytes

    text = json.dumps(result, indent=2) + "\n"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), text.encode())
    if echo:
        print(text, end="")
