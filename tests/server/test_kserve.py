"""KServe v2 / Open Inference Protocol on a real server: our stubs in-process, tritonclient apart.

tritonclient bundles its own copy of the `inference` protos; protobuf refuses two definitions of
one symbol in a process, so the tritonclient test drives the server from a child process.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import grpc
import numpy as np
import pytest

from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style
from p2phd.engine.serving.wire import grpc_service_pb2 as pb
from p2phd.engine.serving.wire import grpc_service_pb2_grpc
from tests.server.conftest import LABEL_NC, make_maps


def infer_request(label, instance=None, seed=None, model="p2phd") -> pb.ModelInferRequest:
    tensor = pb.ModelInferRequest.InferInputTensor
    inputs = [tensor(name="label", datatype="UINT8", shape=list(label.shape))]
    raw = [label.tobytes()]
    if instance is not None:
        inputs.append(tensor(name="instance", datatype="INT32", shape=list(instance.shape)))
        raw.append(instance.astype("<i4").tobytes())
    if seed is not None:
        inputs.append(tensor(name="seed", datatype="INT64", shape=[len(seed)]))
        raw.append(np.asarray(seed, "<i8").tobytes())
    return pb.ModelInferRequest(model_name=model, id="req-1", inputs=inputs, raw_input_contents=raw)


@pytest.fixture
def served(start_server):
    return start_server(max_batch_size=4, max_queue_delay_us=2000)


def test_model_infer_renders_a_batch_like_the_engine(served, server_package):
    maps = [make_maps(seed=s) for s in (1, 2)]
    label = np.stack([m[0] for m in maps])
    instance = np.stack([m[1] for m in maps])
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served.target))
    response = stub.ModelInfer(infer_request(label, instance, seed=[3, 4]), timeout=30)
    assert response.id == "req-1"
    (out,) = response.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("image", "UINT8", [2, 32, 64, 3])
    image = np.frombuffer(response.raw_output_contents[0], np.uint8).reshape(2, 32, 64, 3)
    with Renderer(server_package) as r:
        expected = r.render(label, instance, [Style(seed=3), Style(seed=4)])
    assert np.abs(image.astype(np.int16) - expected).max() <= 2
    (stats,) = stub.ModelStatistics(pb.ModelStatisticsRequest(name="p2phd"), timeout=10).model_stats
    assert stats.inference_count == 2 and 1 <= stats.execution_count <= 2
    assert stats.inference_stats.success.count == 1 and stats.inference_stats.fail.count == 0
    assert sum(b.batch_size * b.compute_infer.count for b in stats.batch_stats) == 2


def test_kserve_metadata_config_and_readiness(served):
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served.target))
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="p2phd"), timeout=10).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="other"), timeout=10).ready
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="p2phd"), timeout=10)
    assert [(t.name, t.datatype) for t in meta.inputs] == [
        ("label", "UINT8"), ("instance", "INT32"), ("seed", "INT64"),
    ]  # fmt: skip
    config = stub.ModelConfig(pb.ModelConfigRequest(name="p2phd"), timeout=10).config
    assert config.max_batch_size == 4
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="other"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.inputs[0].__setattr__("datatype", "FP32"), "datatype FP32"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"short"), "bytes"),
        (lambda r: r.inputs[0].shape.__setitem__(0, 9), "exceeds max_batch_size"),
        (lambda r: r.inputs[0].__setattr__("name", "photo"), "unknown"),
        (lambda r: r.outputs.add(name="depth"), "output 'depth'"),
    ],
    ids=["datatype", "raw-size", "batch-too-large", "unknown-input", "unknown-output"],
)
def test_bad_infer_requests_get_invalid_argument(served, mutate, reason):
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served.target))
    label = make_maps()[0][None]
    if "batch" in reason:
        label = np.repeat(label, 9, axis=0)
    request = infer_request(label)
    mutate(request)
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in e.value.details()


TRITON_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tritonclient.grpc as tc

    target, label_path, instance_path, out_path = sys.argv[1:5]
    client = tc.InferenceServerClient(target)
    report = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready("p2phd"),
        "inputs": [i["name"] for i in client.get_model_metadata("p2phd", as_json=True)["inputs"]],
        "max_batch_size": client.get_model_config("p2phd", as_json=True)["config"][
            "max_batch_size"
        ],
    }
    label, instance = np.load(label_path), np.load(instance_path)
    inputs = [
        tc.InferInput("label", list(label.shape), "UINT8"),
        tc.InferInput("instance", list(instance.shape), "INT32"),
        tc.InferInput("seed", [label.shape[0]], "INT64"),
    ]
    inputs[0].set_data_from_numpy(label)
    inputs[1].set_data_from_numpy(instance)
    inputs[2].set_data_from_numpy(np.arange(label.shape[0], dtype=np.int64))
    result = client.infer("p2phd", inputs, outputs=[tc.InferRequestedOutput("image")])
    np.save(out_path, result.as_numpy("image"))
    stats = client.get_inference_statistics("p2phd", as_json=True)["model_stats"][0]
    report["inference_count"] = int(stats["inference_count"])
    print(json.dumps(report))
    """
)


def test_tritonclient_drives_the_server_unchanged(served, server_package, tmp_path):
    if importlib.util.find_spec("tritonclient") is None:  # importing it here would clash
        pytest.skip("tritonclient[grpc] (dev extra) is not installed")
    label, instance = (np.stack(a) for a in zip(*(make_maps(seed=s) for s in (5, 6)), strict=True))
    np.save(tmp_path / "label.npy", label)
    np.save(tmp_path / "instance.npy", instance)
    out = tmp_path / "image.npy"
    proc = subprocess.run(
        [sys.executable, "-c", TRITON_SCRIPT, served.target,
         str(tmp_path / "label.npy"), str(tmp_path / "instance.npy"), str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "live": True, "ready": True, "model_ready": True,
        "inputs": ["label", "instance", "seed"], "max_batch_size": 4, "inference_count": 2,
    }  # fmt: skip
    image = np.load(out)
    with Renderer(server_package) as r:
        expected = r.render(label, instance, [Style(seed=0), Style(seed=1)])
    assert image.shape == (2, 32, 64, 3) and image.dtype == np.uint8
    assert np.abs(image.astype(np.int16) - expected).max() <= 2
    assert int(label.max()) < LABEL_NC


def test_model_stream_infer_answers_each_request_and_reports_errors_inline(served):
    stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(served.target))
    good = [infer_request(make_maps(seed=s)[0][None]) for s in range(3)]
    for i, r in enumerate(good):
        r.id = f"ok-{i}"
    bad = infer_request(make_maps()[0][None], model="missing")
    bad.id = "bad"
    responses = list(stub.ModelStreamInfer(iter([*good, bad]), timeout=60))
    by_id = {r.infer_response.id: r for r in responses}
    assert sorted(by_id) == ["bad", "ok-0", "ok-1", "ok-2"]
    assert "NOT_FOUND" in by_id["bad"].error_message
    for i in range(3):
        r = by_id[f"ok-{i}"]
        assert r.error_message == ""
        assert list(r.infer_response.outputs[0].shape) == [1, 32, 64, 3]
