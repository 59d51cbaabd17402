"""p2phd inside a real NVIDIA Triton Inference Server (the bundled tritonserver 2.51): a repository
from `p2phd export-triton` and `p2phd triton` render the same pictures as `p2phd render` and
`p2phd serve`, batch with Triton's dynamic batcher as the flags say, and answer bad tensors with
INVALID_ARGUMENT and the reason while the server stays up."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from PIL import Image

from p2phd.common.decode import DEFAULT_MAX_PIXELS
from p2phd.engine.apps.cli import main
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from p2phd.engine.serving.wire import grpc_service_pb2 as pb
from tests.reliability.corpus import bad_cases
from tests.reliability.test_request_fuzz import kserve_requests
from tests.server.conftest import LABEL_NC, make_maps
from tests.triton.conftest import (
    MAX_BATCH,
    QUEUE_DELAY_US,
    free_port,
    image_of,
    infer_request,
    kserve_stub,
    triton_unavailable,
)

SEED = 3


def maps(n: int, h: int = 32, w: int = 64) -> tuple[np.ndarray, np.ndarray]:
    pairs = [make_maps(h, w, seed=i) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def p2phd_render(package, tmp_path, labels, instances) -> np.ndarray:
    """What `p2phd render --seed SEED` writes for these maps, read back from its PNGs."""
    for name, arrays in (("labels", labels), ("instances", instances.astype(np.uint16))):
        (tmp_path / name).mkdir()
        for i, a in enumerate(arrays):
            Image.fromarray(a).save(tmp_path / name / f"m{i}.png")
    argv = ["render", str(package), "--labels", str(tmp_path / "labels"), "--instances",
            str(tmp_path / "instances"), "-o", str(tmp_path / "out"), "--seed", str(SEED),
            "--backend", "onnxruntime", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return np.stack(
        [np.asarray(Image.open(tmp_path / "out" / f"m{i}.png")) for i in range(len(labels))]
    )


def triton_request(labels, instances, seeds) -> pb.ModelInferRequest:
    """Triton batches on the leading dim, so the per-image seed is [B, 1] there."""
    return infer_request(
        label=labels, instance=instances, seed=np.asarray(seeds, np.int64)[:, None]
    )


def assert_same_picture(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    assert np.abs(a.astype(np.int16) - b).max() <= 1


def http_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def test_exported_repository_and_p2phd_serve_render_what_p2phd_render_renders(
    triton,
    server_package,
    start_server,
    tmp_path,
):
    labels, instances = maps(2)
    expected = p2phd_render(server_package, tmp_path, labels, instances)

    through_triton = image_of(
        kserve_stub(triton.target).ModelInfer(
            triton_request(labels, instances, [SEED] * 2), timeout=60
        )
    )
    assert_same_picture(through_triton, expected)

    served = start_server(backend="onnxruntime")
    kserve = infer_request(label=labels, instance=instances, seed=np.full(2, SEED, np.int64))
    assert_same_picture(
        image_of(kserve_stub(served.target).ModelInfer(kserve, timeout=60)), expected
    )


def test_p2phd_serve_and_triton_configure_the_same_tensors(triton, start_server):
    """One declaration (kserve.inputs_of, OUTPUT) gives both servers' ModelConfig tensors."""

    def tensors(target: str) -> tuple[list, list]:
        config = (
            kserve_stub(target).ModelConfig(pb.ModelConfigRequest(name="p2phd"), timeout=30).config
        )
        return (
            [(t.name, t.data_type, list(t.dims), t.optional) for t in config.input],
            [(t.name, t.data_type, list(t.dims)) for t in config.output],
        )

    served = tensors(start_server(backend="onnxruntime").target)
    assert served == tensors(triton.target)
    assert [name for name, *_ in served[0]] == ["label", "instance", "seed"]


def test_the_repository_carries_the_batching_flags_and_a_cpu_instance_group(triton, triton_repo):
    config = http_json(triton.http_port, "/v2/models/p2phd/config")
    assert config["backend"] == "python"
    assert config["max_batch_size"] == MAX_BATCH
    batching = config["dynamic_batching"]
    assert int(batching["max_queue_delay_microseconds"]) == QUEUE_DELAY_US
    assert int(batching["default_queue_policy"]["max_queue_size"]) == 16
    assert [g["kind"] for g in config["instance_group"]] == ["KIND_CPU"]
    assert [i["name"] for i in config["input"]] == ["label", "instance", "seed"]
    assert (triton_repo / "p2phd" / "1" / "package" / "manifest.json").is_file()


def test_concurrent_requests_share_engine_calls_and_each_gets_its_own_images(
    triton, server_package
):
    """Eight one-image requests sent together: Triton's batcher hands them over in batches (it
    batches requests of one shape), and each answer is the image of that request's map and seed."""
    requests = []
    for i in range(8):
        label, instance = make_maps(seed=10 + i)
        requests.append((label[None], instance[None], [i]))
    stub = kserve_stub(triton.target)
    before = stub.ModelStatistics(pb.ModelStatisticsRequest(name="p2phd")).model_stats[0]
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(
            lambda r: image_of(stub.ModelInfer(triton_request(*r), timeout=60)), requests
        ))  # fmt: skip
    after = stub.ModelStatistics(pb.ModelStatisticsRequest(name="p2phd")).model_stats[0]
    assert after.inference_count - before.inference_count == len(requests)
    assert after.execution_count - before.execution_count < len(requests)
    renderer = Renderer(server_package, backend="onnxruntime")
    for (label, instance, seeds), image in zip(requests, answers, strict=True):
        assert_same_picture(image, renderer.render(label, instance, Style(seed=seeds[0])))


def test_tritonclient_sees_health_metadata_statistics_and_renders(triton, tmp_path):
    """Triton's own client in a child process (its `inference` protos clash with ours)."""
    labels, instances = maps(1)
    np.save(tmp_path / "label.npy", labels)
    np.save(tmp_path / "instance.npy", instances)
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        import tritonclient.grpc as tc

        target, folder = sys.argv[1:3]
        client = tc.InferenceServerClient(target)
        label, instance = np.load(folder + "/label.npy"), np.load(folder + "/instance.npy")
        inputs = [tc.InferInput("label", list(label.shape), "UINT8"),
                  tc.InferInput("instance", list(instance.shape), "INT32"),
                  tc.InferInput("seed", [1, 1], "INT64")]
        inputs[0].set_data_from_numpy(label)
        inputs[1].set_data_from_numpy(instance)
        inputs[2].set_data_from_numpy(np.array([[3]], np.int64))
        np.save(folder + "/image.npy", client.infer("p2phd", inputs).as_numpy("image"))
        stats = client.get_inference_statistics("p2phd", as_json=True)["model_stats"][0]
        print(json.dumps({
            "live": client.is_server_live(), "ready": client.is_model_ready("p2phd"),
            "outputs": [o["name"] for o in
                        client.get_model_metadata("p2phd", as_json=True)["outputs"]],
            "successes": int(stats["inference_stats"]["success"]["count"]),
        }))
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, triton.target, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["live"] and report["ready"] and report["outputs"] == ["image"]
    assert report["successes"] >= 1
    direct = image_of(kserve_stub(triton.target).ModelInfer(triton_request(labels, instances, [3])))
    assert_same_picture(np.load(tmp_path / "image.npy"), direct)
    with urllib.request.urlopen(f"http://127.0.0.1:{triton.metrics_port}/metrics", timeout=10) as r:
        assert 'nv_inference_count{model="p2phd",version="1"}' in r.read().decode()


def corpus_raw_cases() -> dict:
    """The reliability corpus's raw-array cases, as Triton tensors (its PNG cases need a
    decoder that Triton's tensor inputs never reach)."""
    cases = {}
    for case in bad_cases(LABEL_NC, DEFAULT_MAX_PIXELS):
        if isinstance(case.label, np.ndarray):
            arrays = {"label": case.label[None]}
            if isinstance(case.instance, np.ndarray):
                arrays["instance"] = case.instance[None].astype(np.int32)
            cases[case.name] = (arrays, case.reason)
    return cases


BAD = {
    **corpus_raw_cases(),
    "instance size differs": (
        dict(label=np.ones((1, 16, 32), np.uint8), instance=np.ones((1, 16, 31), np.int32)),
        "differs",
    ),
    "negative seed": (
        dict(label=np.ones((1, 16, 32), np.uint8), seed=np.array([[-1]], np.int64)),
        "negative seed",
    ),
    "seed per image missing": (
        dict(label=np.ones((2, 16, 32), np.uint8), seed=np.array([[1]], np.int64)),
        "batch size",
    ),
    "zero-height map": (dict(label=np.ones((1, 0, 32), np.uint8)), "dims > 0"),
    "label as INT32": (dict(label=np.ones((1, 16, 32), np.int32)), "UINT8"),
    "batch over max_batch_size": (dict(label=np.ones((MAX_BATCH + 1, 16, 32), np.uint8)), "batch"),
    "over the pixel limit": (dict(label=np.ones((1, 4096, 4097), np.uint8)), "exceeds"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_tensors_are_invalid_argument_with_the_reason(triton, case):
    arrays, reason = BAD[case]
    stub = kserve_stub(triton.target)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(infer_request(**arrays), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in err.value.details()
    assert stub.ServerLive(pb.ServerLiveRequest()).live


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kserve_requests)
def test_the_reliability_fuzz_gets_client_errors_and_triton_stays_up(triton, request):
    """The random KServe requests the reliability suite sends to `p2phd serve`."""
    stub = kserve_stub(triton.target)
    try:
        response = stub.ModelInfer(request, timeout=30)
    except grpc.RpcError as e:
        client_errors = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                         grpc.StatusCode.UNAVAILABLE)  # fmt: skip
        assert e.code() in client_errors, (e.code(), e.details())
        assert e.details()
    else:
        assert response.outputs[0].name == "image"
    assert triton.process.poll() is None


def test_p2phd_triton_serves_the_package_with_the_serve_flags(server_package, tmp_path):
    if (reason := triton_unavailable()) is not None:
        pytest.skip(reason)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    cmd = [sys.executable, "-m", "p2phd.engine.apps.cli", "triton", str(server_package),
           "--port", str(grpc_port), "--http-port", str(http_port),
           "--metrics-port", str(metrics_port), "--max-batch", "2", "--max-queue-delay-us", "500",
           "--preferred-batch", "2", "--backend", "onnxruntime"]  # fmt: skip
    log = tmp_path / "triton.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 120
        while "ready; KServe v2 gRPC on" not in log.read_text():  # what it prints when ready
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < end, "p2phd triton not ready in 120 s"
            time.sleep(0.3)
        stub = kserve_stub(f"127.0.0.1:{grpc_port}")
        labels, instances = maps(2)
        image = image_of(stub.ModelInfer(triton_request(labels, instances, [SEED] * 2), timeout=60))
        assert_same_picture(image, p2phd_render(server_package, tmp_path, labels, instances))
        config = http_json(http_port, "/v2/models/p2phd/config")
        assert config["max_batch_size"] == 2
        assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 500
        assert config["dynamic_batching"]["preferred_batch_size"] == [2]
        # No --max-queue: no Triton queue bound (one makes its batcher stall; see repository).
        policy = config["dynamic_batching"].get("default_queue_policy", {})
        assert int(policy.get("max_queue_size", 0)) == 0
        stats = http_json(http_port, "/v2/models/p2phd/stats")["model_stats"][0]
        assert stats["inference_count"] == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
            assert "nv_inference_request_success" in r.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log.read_text()[-3000:]


def test_export_for_gpus_then_refuses_an_existing_model_and_a_bad_name(
    server_package, tmp_path, capsys
):
    argv = ["export-triton", str(server_package), "-o", str(tmp_path), "--kind", "gpu"]
    assert main([*argv, "--instances", "2"]) == 0
    assert (
        "instance_group [ { count: 2 kind: KIND_GPU } ]"
        in (tmp_path / "p2phd" / "config.pbtxt").read_text()
    )
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--model-name", "../x"]) == 2
    assert "model name '../x'" in capsys.readouterr().err


def test_a_tritonserver_that_cannot_run_is_named_in_one_line(server_package, tmp_path, capsys):
    argv = ["triton", str(server_package), "--port", str(free_port()), "--repository",
            str(tmp_path / "repo"), "--tritonserver"]  # fmt: skip
    assert main([*argv, str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: cannot run it as tritonserver" in capsys.readouterr().err
