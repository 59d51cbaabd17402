"""Faults: backend errors fail only their own batch, out of memory splits a batch instead of
failing it, and a model package that was tampered with (or asks for pickle) never loads."""

from __future__ import annotations

import ast
import json
import re
import shutil
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest

from p2phd.common.errors import Overloaded, P2PHDError, PackageError, is_out_of_memory
from p2phd.engine.apps.cli import main
from p2phd.engine.core.package import FEATURES, MANIFEST, ModelPackage, write_manifest
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.serving.client import RenderClient, RenderItem
from p2phd.engine.serving.server import default_renderer
from p2phd.engine.serving.wire import renderer_pb2_grpc
from tests.doubles.engine import WrappedEngine
from tests.server.conftest import make_maps

REPO = Path(__file__).resolve().parents[2]


class FlakyEngine(WrappedEngine):
    """The real renderer, but every `fail_every`-th engine call raises a backend fault and any
    batch of more than `memory_for` images raises `oom` (as a backend out of memory would)."""

    def __init__(self, renderer, *, fail_every: int = 0, memory_for: int = 1 << 30,
                 oom: Exception | None = None):  # fmt: skip
        super().__init__(renderer)
        self.fail_every = fail_every
        self.memory_for = memory_for
        self.oom = oom or MemoryError()
        self.calls: list[tuple[int, str]] = []  # (batch size, outcome)
        self.lock = threading.Lock()

    def render(self, labels, instances=None, style=None):
        with self.lock:
            n = len(self.calls) + 1
            if len(labels) > self.memory_for:
                self.calls.append((len(labels), "oom"))
                raise self.oom
            if self.fail_every and n % self.fail_every == 0:
                self.calls.append((len(labels), "fault"))
                raise RuntimeError(f"simulated backend fault in call {n}")
            self.calls.append((len(labels), "ok"))
        return super().render(labels, instances, style)


def flaky(**kwargs):
    engines: list[FlakyEngine] = []

    def factory(cfg):
        engines.append(FlakyEngine(default_renderer(cfg), **kwargs))
        return engines[-1]

    return factory, engines


def test_failing_batches_fail_exactly_their_own_requests_under_concurrency(start_server):
    factory, engines = flaky(fail_every=3)
    s = start_server(factory, max_batch_size=4, max_queue_delay_us=20_000)
    stub = renderer_pb2_grpc.RendererStub(grpc.insecure_channel(s.target))
    label, instance = make_maps(seed=4)
    futures = [stub.Render.future(RenderItem(label, instance).request(), timeout=60)
               for _ in range(24)]  # fmt: skip
    ok = internal = 0
    for f in futures:
        try:
            assert f.result().raw.shape == [32, 64, 3]
            ok += 1
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INTERNAL, e.details()
            assert "simulated backend fault" in e.details()
            internal += 1
    calls = engines[0].calls
    failed_images = sum(n for n, outcome in calls if outcome == "fault")
    assert internal == failed_images > 0  # each fault failed its own batch's requests, no more
    assert ok == sum(n for n, outcome in calls if outcome == "ok")
    assert any(n > 1 for n, _ in calls)  # the faults hit real batches, not single requests
    engines[0].fail_every = 0
    assert stub.Render(RenderItem(label, instance).request(), timeout=30).raw.shape == [32, 64, 3]


@pytest.mark.parametrize(
    "oom",
    [
        MemoryError(),
        RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory"),
        RuntimeError("Exception from src/inference/src/infer_request.cpp: std::bad_alloc"),
    ],
    ids=["MemoryError", "onnxruntime", "openvino"],
)
def test_out_of_memory_on_a_large_batch_splits_it_and_every_request_succeeds(start_server, oom):
    factory, engines = flaky(memory_for=2, oom=oom)
    s = start_server(factory, max_batch_size=8, preferred_batch_sizes=(8,),
                     max_queue_delay_us=2_000_000)  # fmt: skip
    items = [RenderItem(*make_maps(seed=i), seed=i, request_id=str(i)) for i in range(8)]
    with RenderClient(s.target) as c:
        results = dict(c.render_stream(items))
    assert all(results[str(i)].shape == (32, 64, 3) for i in range(8))
    calls = engines[0].calls
    assert calls[0] == (8, "oom")  # the whole batch was tried first, then halves of it
    assert sorted(n for n, outcome in calls if outcome == "ok") == [2, 2, 2, 2]
    # A split batch renders what the unsplit one would have: compare with the engine alone.
    with Renderer(s.server.config.model_dir) as r:
        from p2phd.engine.core.style import Style

        for i in (0, 5):
            label, instance = make_maps(seed=i)
            expected = r.render(label, instance, Style(seed=i))[0]
            assert np.abs(results[str(i)].astype(int) - expected).max() <= 2


def test_an_image_that_alone_does_not_fit_gets_resource_exhausted_and_the_server_lives(
    start_server,
):
    factory, engines = flaky(memory_for=0)
    s = start_server(factory, max_batch_size=4)
    label, instance = make_maps(seed=1)
    with RenderClient(s.target) as c:
        with pytest.raises(Overloaded, match="out of memory rendering one 64x32 image"):
            c.render(label, instance)
        engines[0].memory_for = 4
        assert c.render(label, instance).shape == (32, 64, 3)


def test_only_out_of_memory_errors_count_as_out_of_memory():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(RuntimeError("cudaErrorMemoryAllocation"))
    assert not is_out_of_memory(RuntimeError("simulated backend fault"))
    assert not is_out_of_memory(ValueError("shape mismatch"))


# -- package integrity ----------------------------------------------------------------------------


@pytest.fixture
def package_copy(server_package, tmp_path) -> Path:
    out = tmp_path / "pkg"
    shutil.copytree(server_package, out, ignore=shutil.ignore_patterns("engines"))
    return out


def test_a_flipped_byte_in_the_generator_refuses_to_serve(package_copy, capsys):
    onnx = package_copy / "generator.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 1
    onnx.write_bytes(bytes(data))
    assert main(["serve", str(package_copy), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"generator.onnx: sha256 \S+ does not match the manifest's", err)
    assert "Traceback" not in err


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_generator_the_runtime_cannot_parse_is_a_one_line_error(package_copy, backend, capsys):
    (package_copy / "generator.onnx").write_bytes(b"not an ONNX model")
    write_manifest(package_copy, ModelPackage(package_copy, verify=False).manifest)  # hashes agree
    assert main(["serve", str(package_copy), "--port", "0", "--backend", backend]) == 2
    err = capsys.readouterr().err
    assert f"the {backend} backend cannot load the model" in err and str(package_copy) in err
    assert "Traceback" not in err


MANIFEST_FIELDS = [
    "label_nc",
    "size_multiple",
    "instance",
    "feat_num",
    "files",
    "variants",
    "classes",
    "architecture",
    "input_kind",
    "input_nc",
    "format_version",
]
ODD_VALUES = [None, "x", -1, 0, 3.5, [], {}, {"a": 1}, True, 10**9, [{"id": "q"}]]


@pytest.mark.parametrize("field", MANIFEST_FIELDS)
def test_a_manifest_field_of_the_wrong_type_or_range_is_refused_or_harmless(package_copy, field):
    """Each odd value either loads and renders or is a P2PHDError naming the field: never a
    crash (instance: -1 once sized the kernels' buffer one channel short: heap corruption)."""
    path = package_copy / MANIFEST
    original = json.loads(path.read_text())
    label, instance = make_maps(seed=6)
    for value in ODD_VALUES:
        path.write_text(json.dumps({**original, field: value}))
        try:
            with Renderer(package_copy) as r:
                assert r.render(label, instance)[0].shape == (32, 64, 3)
        except P2PHDError as e:  # any other exception fails the test with its traceback
            assert str(package_copy) in str(e) or "label_nc" in str(e), (value, e)


UNPICKLED: list[str] = []


class Tripwire:
    """An object whose unpickling is recorded: proof of whether pickle data was ever loaded."""

    def __reduce__(self):
        return (UNPICKLED.append, ("features.npz was unpickled",))


def test_features_holding_an_object_array_are_refused_and_never_unpickled(package_copy):
    np.savez(package_copy / FEATURES, class_3=np.array([Tripwire()], dtype=object))
    manifest = ModelPackage(package_copy).manifest
    write_manifest(package_copy, manifest)  # a consistent manifest: the hash check passes
    with pytest.raises(PackageError, match=r"features.npz: .*pickle.*class_<id>"):
        Renderer(package_copy)
    assert UNPICKLED == []


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/hostname", "sub/generator.onnx", ".."])
def test_a_manifest_naming_files_outside_the_package_is_refused(package_copy, name):
    path = package_copy / MANIFEST
    data = json.loads(path.read_text())
    data["files"][name] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(PackageError, match="not a plain file name inside the package"):
        ModelPackage(package_copy)


# The original pix2pixHD's feature clusters are a pickled .npy: they are unpickled only by this
# converter, on a file the user names explicitly, and never at run time (engine/).
EXPLICIT_PICKLE = {("train/pix2pixhd/original_checkpoint.py", "load_feature_clusters")}


def _load_calls(tree: ast.AST):
    """(innermost enclosing function's name, call) for every `<x>.load(...)` call in a module."""
    found: dict[int, tuple[str, ast.Call]] = {}
    # ast.walk is breadth first: inner functions come later and overwrite their outer ones.
    for func in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]:
        for node in ast.walk(func):
            call = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if call and node.func.attr == "load":
                found[id(node)] = (getattr(func, "name", ""), node)
    return found.values()


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_no_source_file_loads_pickle_implicitly():
    """Every np.load passes allow_pickle=False, every torch.load weights_only=True, and nothing
    imports pickle: a model package or checkpoint can never run code when it is read."""
    offenders = set()
    for folder in ("common", "engine", "export", "train", "benchmarks"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            where = path.relative_to(REPO).as_posix()
            for function, call in _load_calls(tree):
                owner = getattr(call.func.value, "id", "")
                pickles = _keyword(call, "allow_pickle") is not False
                pickles = pickles and (where, function) not in EXPLICIT_PICKLE
                if owner in ("np", "numpy") and pickles:
                    offenders.add(f"{where}:{call.lineno} np.load without allow_pickle=False")
                if owner == "torch" and _keyword(call, "weights_only") is not True:
                    offenders.add(f"{where}:{call.lineno} torch.load without weights_only=True")
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                    if any(n.split(".")[0] in ("pickle", "cPickle", "dill") for n in names):
                        offenders.add(f"{where}:{node.lineno} imports pickle")
    assert sorted(offenders) == []
