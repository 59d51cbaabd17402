"""Run a real `tritonserver` on a model repository: by default the one the nvidia-pytriton wheel
bundles (Triton 2.51 with its Python backend), or a stock install's.

Triton's Python backend runs each model instance in a stub process that embeds a Python through
its shared libpython. With the bundled server, the stub built for this interpreter's version is
used, and the stub embeds *this* Python: its libpython first on the loader path (another 3.x build
on the system path, e.g. Debian's 3.11.2 under a pyenv 3.11.7, fails on a mismatched standard
library) and this environment's bin first on PATH (the embedded interpreter finds its prefix, the
venv's site-packages and so p2phd, from `python3` on PATH, as a venv's python does).
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from p2phd.common.errors import ConfigError

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install the tritonserver nvidia-pytriton bundles with "
    "`pip install --no-deps nvidia-pytriton==0.7.0` (make test does), or pass --tritonserver"
)
STUB = "triton_python_backend_stub"


def bundled_root() -> Path:
    """The tritonserver tree inside the installed nvidia-pytriton wheel (never imported: its
    Python library pins numpy<2, p2phd uses only the server it carries)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"no tritonserver found: {INSTALL_HINT}")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ConfigError(f"{root}: no bin/tritonserver in the nvidia-pytriton wheel")
    return root


def libpython_dir() -> Path:
    """The directory of this interpreter's shared libpython, which the stub must load."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise ConfigError(
            f"{sys.executable} has no shared libpython, which Triton's Python backend embeds; "
            "use a Python built with --enable-shared (Debian's python3.11, the python.org Docker "
            "images, pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )
    return Path(sysconfig.get_config_var("LIBDIR"))


def bundled_backends(dest: Path) -> Path:
    """A backend directory (dest/python/) holding the bundled Python backend with the stub of
    this interpreter's version, linked from the wheel."""
    root = bundled_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / STUB
    if not stub.is_file():
        raise ConfigError(f"the bundled Triton has no Python backend stub for Python {version}")
    python = dest / "python"
    python.mkdir(parents=True, exist_ok=True)
    backend = root / "backends" / "python"
    for source in (
        backend / "libtriton_python.so",
        backend / "triton_python_backend_utils.py",
        stub,
    ):
        link = python / source.name
        link.unlink(missing_ok=True)
        link.symlink_to(source)
    return dest


def stub_environment() -> dict[str, str]:
    """This process's environment, set up for the stub to embed this Python and venv."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env.get("PATH")]))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [str(libpython_dir()), env.get("LD_LIBRARY_PATH")])
    )
    return env


def _term_with_parent() -> None:
    """In the child before exec: SIGTERM it when its parent dies (Linux), so a killed
    `p2phd triton` leaves no tritonserver behind holding its ports."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonServer:
    """A tritonserver process serving `repo`; `start()` returns once the server is ready.

    `work_dir` holds the assembled backend directory. gRPC is always on (p2phd's KServe port);
    HTTP and metrics when given a port. `binary` and `backends` select a stock install instead
    of the bundled one (its own stub and Python then: see the README's Triton section).
    """

    def __init__(
        self,
        repo: Path,
        work_dir: Path,
        *,
        host: str = "127.0.0.1",
        grpc_port: int,
        http_port: int | None = None,
        metrics_port: int | None = None,
        grace: float = 30.0,
        binary: Path | None = None,
        backends: Path | None = None,
        log_file: Path | None = None,
    ):
        self.repo = Path(repo)
        self.work_dir = Path(work_dir)
        self.host = host
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.grace = grace
        self.binary = binary
        self.backends = backends
        self.log_file = log_file
        self.process: subprocess.Popen | None = None

    @property
    def target(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def command(self) -> list[str]:
        if self.binary is None:
            binary = bundled_root() / "bin" / "tritonserver"
            backends = self.backends or bundled_backends(self.work_dir / "backends")
        else:
            binary = self.binary
            backends = self.backends or Path(binary).resolve().parent.parent / "backends"
        command = [
            str(binary),
            f"--model-repository={self.repo}",
            f"--backend-directory={backends}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--exit-timeout-secs={max(1, round(self.grace))}",
            "--allow-gpu-metrics=false",
        ]
        if self.http_port is None:
            command.append("--allow-http=false")
        else:
            command += [f"--http-address={self.host}", f"--http-port={self.http_port}"]
        if self.metrics_port is None:
            command.append("--allow-metrics=false")
        else:
            command += [f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}"]
        return command

    def start(self, timeout: float = 180.0) -> TritonServer:
        command = self.command()
        env = stub_environment() if self.binary is None else dict(os.environ)
        out = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        try:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            preexec_fn=_term_with_parent)  # fmt: skip
        except OSError as e:  # a --tritonserver that is missing or not executable
            raise ConfigError(f"{command[0]}: cannot run it as tritonserver ({e.strerror})") from e
        finally:
            if out is not None:
                out.close()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float) -> None:
        """Poll KServe ServerReady until true; fail at once if the process exits."""
        import grpc

        from p2phd.engine.serving.wire import grpc_service_pb2 as pb
        from p2phd.engine.serving.wire import grpc_service_pb2_grpc

        end = time.monotonic() + timeout
        # Reconnect quickly: the default backoff, after the first refused connection, would
        # report ready seconds after Triton is.
        fast = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 200)]
        with grpc.insecure_channel(self.target, options=fast) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            while True:
                code = self.process.poll()
                if code is not None:
                    where = f"; its log: {self.log_file}" if self.log_file else ""
                    raise ConfigError(f"tritonserver exited with status {code}{where}")
                try:
                    if stub.ServerReady(pb.ServerReadyRequest(), timeout=2).ready:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > end:
                    raise ConfigError(f"tritonserver not ready after {timeout:.0f} s")
                time.sleep(0.2)

    def wait(self) -> int:
        return self.process.wait()

    def stop(self) -> int | None:
        """SIGTERM (Triton finishes requests in flight within the grace period), then kill."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.grace + 15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
