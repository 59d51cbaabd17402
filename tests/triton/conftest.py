"""Triton fixtures: the tiny server package exported with `p2phd export-triton` and served by the
real tritonserver the nvidia-pytriton wheel bundles (`make test` installs it), plus KServe v2
helpers speaking to it through p2phd's own stubs (tritonclient's copy of the same protos cannot
share a process with them: see tests/server/test_kserve.py)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from p2phd.common.errors import ConfigError
from p2phd.engine.apps.cli import main
from p2phd.engine.serving.wire import grpc_service_pb2 as pb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc
from tests.server.conftest import free_port, server_package, start_server  # noqa: F401

MAX_BATCH = 4
# Long enough that requests sent together meet in one batch even on a loaded 2-core machine.
QUEUE_DELAY_US = 50_000
DATATYPES = {np.dtype(np.uint8): "UINT8", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}


def triton_unavailable() -> str | None:
    """Why the bundled Triton cannot run here, or None."""
    from p2phd.engine.serving.triton.launch import bundled_root, libpython_dir

    try:
        bundled_root()
        libpython_dir()
    except ConfigError as e:
        return str(e)
    return None


def infer_request(model: str = "p2phd", **arrays: np.ndarray) -> pb.ModelInferRequest:
    """A KServe ModelInferRequest with raw contents for each named array."""
    request = pb.ModelInferRequest(model_name=model)
    for name, a in arrays.items():
        request.inputs.add(name=name, datatype=DATATYPES[a.dtype], shape=a.shape)
        request.raw_input_contents.append(np.ascontiguousarray(a).tobytes())
    return request


def image_of(response: pb.ModelInferResponse) -> np.ndarray:
    out = response.outputs[0]
    assert (out.name, out.datatype) == ("image", "UINT8")
    return np.frombuffer(response.raw_output_contents[0], np.uint8).reshape(out.shape)


def kserve_stub(target: str) -> grpc_service_pb2_grpc.GRPCInferenceServiceStub:
    channel = grpc.insecure_channel(target)
    return grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)


def export(package: Path, repo: Path, *flags: str) -> Path:
    """`p2phd export-triton PACKAGE -o REPO FLAGS` (skips where the bundled Triton cannot run)."""
    if (reason := triton_unavailable()) is not None:
        pytest.skip(reason)
    assert main(["export-triton", str(package), "-o", str(repo), *flags]) == 0
    return repo


@contextmanager
def tritonserver(repo: Path, work: Path):
    """The bundled tritonserver on `repo`, HTTP and metrics on, its log in `work`."""
    from p2phd.engine.serving.triton.launch import TritonServer

    server = TritonServer(
        repo,
        work,
        grpc_port=free_port(),
        http_port=free_port(),
        metrics_port=free_port(),
        grace=5,
        log_file=work / "tritonserver.log",
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def triton_repo(server_package, tmp_path_factory) -> Path:  # noqa: F811
    """A model repository written by `p2phd export-triton` (batching flags as `p2phd serve`'s)."""
    return export(
        server_package,
        tmp_path_factory.mktemp("triton") / "repo",
        "--kind",
        "cpu",
        "--max-batch",
        str(MAX_BATCH),
        "--max-queue-delay-us",
        str(QUEUE_DELAY_US),
        "--max-queue",
        "16",
        "--backend",
        "onnxruntime",
    )


@pytest.fixture(scope="session")
def triton(triton_repo, tmp_path_factory):
    with tritonserver(triton_repo, tmp_path_factory.mktemp("triton-work")) as server:
        yield server
