"""int8 (issue 20): calibration into one Q/DQ graph, the quality gate, and the backends reading it.

The trained default model (models/default: a quality test, unlike random weights) is calibrated
on the synthetic street scenes it was trained on, or on label/instance PNGs written here, at
64x128; the gate is measured by real OpenVINO and ONNX Runtime sessions, and TensorRT's path
runs on its test double. Input errors are checked on the tiny package (they stop before NNCF).
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

from p2phd.common.errors import ConfigError
from p2phd.engine.apps.bench.harness import Bench, BenchConfig
from p2phd.engine.apps.bench.machine import fma_per_cycle
from p2phd.engine.apps.cli import main
from p2phd.engine.core import quality
from p2phd.engine.core.cpu_features import int8_unsupported
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.serving.client import RenderClient
from p2phd.engine.serving.config import ServerConfig
from p2phd.export.package_info import describe_package
from tests.conftest import REPO
from tests.doubles.fixtures import trt_double_fixture  # noqa: F401
from tests.server.conftest import ThreadedServer

SIZE = ["--size", "64x128"]
needs_vnni = pytest.mark.skipif(bool(int8_unsupported()), reason=str(int8_unsupported()))


def write_maps(folder, labels, instances):
    """Cityscapes-named label and 16-bit instance PNGs, keys k000, k001, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (lab, ins) in enumerate(zip(labels, instances, strict=True)):
        Image.fromarray(lab).save(folder / f"k{i:03d}_gtFine_labelIds.png")
        Image.fromarray(ins.astype(np.uint16)).save(folder / f"k{i:03d}_gtFine_instanceIds.png")
    return folder


@pytest.fixture
def default_model(tmp_path):
    """A copy of the trained default model without its engines/ (7.7 MB generator)."""
    return shutil.copytree(REPO / "models" / "default", tmp_path / "default", ignore=_engines)


def _engines(folder, names):
    return ["engines"] if "engines" in names else []


def build(pkg, backend, *extra):
    return main(["build", str(pkg), "--backend", backend, "--precision", "int8", *SIZE, *extra])


def report(pkg) -> dict:
    return json.loads((pkg / "engines" / "quality.json").read_text())


@needs_vnni
@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_build_passes_the_gate_then_renders_on_request_only(
    backend, default_model, tiny_maps, engine_cache_dir, capsys
):
    package = ModelPackage(default_model)
    quality.write_entry(  # an fp32-generator entry measured before the int8 graph existed
        package.engines_dir, "openvino:bf16", {"psnr_db": 50.0, "package": package.content_key}
    )
    assert build(default_model, backend, "--calibration", "synthetic") == 0
    assert "int8 gate passed" in capsys.readouterr().out
    entry = report(default_model)[f"{backend}:int8"]
    assert entry["gate"] == "passed" and entry["p999_levels"] <= quality.INT8_MAX_P999_LEVELS
    with Renderer(default_model, backend, "int8") as measured:  # what measured it, recorded
        assert entry["engine"] == measured.backend.cache_key()
    assert entry["worst_image_psnr_db"] >= quality.MIN_PSNR_DB
    assert entry["inputs"].startswith("8 held-out maps") and "synth_003" in entry["inputs"]

    # The record says what it was calibrated on and what stayed in float, and why.
    package = ModelPackage(default_model)  # re-read: verifies the new file's hash
    record = package.manifest.calibration["int8"]
    assert record["held_out_maps"][:2] == ["synth_003", "synth_007"]
    assert len(record["calibration_maps"]) == 24 and record["size"] == "64x128"
    kept = {k["op"]: k["why"] for k in record["kept_in_float"]}
    assert set(kept) <= {"Conv"}  # the transposed convolutions are quantized sub-pixel convs
    assert "Conv" not in kept or kept["Conv"].startswith("sensitivity search")
    # ... and the graph matches the record: the kept layers read float weights, the others int8.
    graph = onnx.load(str(package.variant_path("int8"))).graph
    ops = [n.op_type for n in graph.node]
    assert "ConvTranspose" not in ops and ops.count("DepthToSpace") == 3
    producer = {o: n.op_type for n in graph.node for o in n.output}
    names = {k["node"] for k in record["kept_in_float"]}
    for node in graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            quantized = producer.get(node.input[1]) == "DequantizeLinear"
            assert quantized == (node.name not in names), node.name
    info = describe_package(default_model)
    assert "int8          generator.int8.onnx: calibrated on 24 maps of 32 synthetic" in info
    assert f"{backend}:int8" in info and "no, only when asked (gate passed)" in info
    # The bf16 entry of the unchanged fp32 generator still counts for the new export.
    ok, _ = quality.allows(report(default_model), "openvino:bf16", package.content_key)
    assert ok

    labels, instances = tiny_maps
    with_int8 = Renderer(default_model, backend, "int8")
    assert with_int8.describe()["precision"] == "int8"
    assert "passed the int8 gate" in with_int8.describe()["precision_reason"]
    if backend == "openvino":  # the first layer's output the int8 layer reads: from the labels
        assert with_int8.describe()["first_conv"] == "from the labels, normalised to uint8 levels"
    fp32 = Renderer(default_model, backend, "fp32")
    psnr = quality.psnr_db(fp32.render(labels, instances), with_int8.render(labels, instances))
    assert psnr > 30
    auto = Renderer(default_model, backend, "auto")
    assert auto.choice.precision != "int8" and "--precision int8" in auto.choice.precision_reason
    for r in (with_int8, fp32, auto):
        r.close()

    # p2phd serve --precision int8: GetModelInfo says what runs, and a render comes back.
    server = ThreadedServer(
        ServerConfig(model_dir=default_model, backend=backend, precision="int8", port=0)
    )
    client = RenderClient(server.target)
    try:
        assert json.loads(client.model_info().describe_json)["precision"] == "int8"
        assert client.render(labels[0], instances[0]).shape == (*labels.shape[1:], 3)
    finally:
        client.close()
        server.stop()

    # p2phd bench's int8 row: quality with the worst pixel, MACs against the int8 peak.
    config = BenchConfig(default_model, (backend,), ("int8",), (1,), ((64, 128),), 0, 1, False)
    (row,) = Bench(config).run()["rows"]
    assert row["status"] == "ok" and row["peak_precision"] == "int8"
    assert row["quality"]["worst_levels"] >= row["quality"]["p999_levels"] >= 0


@needs_vnni
def test_a_broken_calibration_fails_the_gate_and_int8_is_refused_with_the_numbers(
    default_model, tmp_path, engine_cache_dir, capsys
):
    # Calibrated on blank maps (one class, no edges), gated on the held-out busy ones (k003,
    # k007): the activation ranges miss what real maps produce.
    labels, instances = quality.synthetic_maps(8, 64, 128, 35, seed=5)
    for i in (0, 1, 2, 4, 5, 6):
        labels[i], instances[i] = 0, 0
    maps = write_maps(tmp_path / "maps", labels, instances)
    assert build(default_model, "onnxruntime", "--calibration", str(maps)) == 1
    out = capsys.readouterr().out
    assert "int8 gate failed" in out and "levels" in out
    entry = report(default_model)["onnxruntime:int8"]
    assert entry["gate"] == "failed"
    assert (
        entry["p999_levels"] > quality.INT8_MAX_P999_LEVELS
        or entry["worst_image_psnr_db"] < quality.MIN_PSNR_DB
    )
    with pytest.raises(ConfigError, match=r"failed the int8 gate: worst held-out image .* dB"):
        Renderer(default_model, "onnxruntime", "int8")


def test_tensorrt_int8_builds_a_signed_q_dq_network_from_the_same_graph(
    default_model, trt_double, monkeypatch, capsys
):
    from p2phd.engine.backends import onnxruntime, openvino

    # The calibration itself runs anywhere; the GPU is the double.
    monkeypatch.setattr(onnxruntime, "int8_unsupported", lambda: None)
    monkeypatch.setattr(openvino, "int8_unsupported", lambda: None)
    code = build(default_model, "tensorrt", "--calibration", "synthetic", "--batch", "1:1:2")
    out = capsys.readouterr().out
    assert "tensorrt:int8" in out and "int8 gate" in out
    assert trt_double.trt.builds == 1  # the double's parser takes signed int8 quantizers only
    # The package's graph keeps NNCF's unsigned quantizers (for the CPUs); TensorRT's is derived.
    graph = onnx.load(str(ModelPackage(default_model).variant_path("int8"))).graph
    assert any(t.data_type == onnx.TensorProto.UINT8 for t in graph.initializer)
    entry = report(default_model)["tensorrt:int8"]
    assert entry["gate"] == ("passed" if code == 0 else "failed")
    assert entry["device"].startswith("cuda")


def test_int8_without_a_calibration_says_how_to_make_one(tiny_package, tmp_path, capsys):
    assert build(tiny_package, "onnxruntime") == 2
    assert "--precision int8 needs --calibration DIR" in capsys.readouterr().err
    assert "int8          not calibrated: make one with 'p2phd build" in describe_package(
        tiny_package
    )
    with pytest.raises(ConfigError, match="has no int8 calibration; make one with 'p2phd build"):
        Renderer(tiny_package, "onnxruntime", "int8")
    assert main(["build", str(tiny_package), "--backend", "onnxruntime", "--calibration", "x"]) == 2
    assert "--calibration is for --precision int8" in capsys.readouterr().err


def test_calibration_maps_must_pair_and_be_enough(tiny_package, tmp_path, capsys):
    labels, instances = quality.synthetic_maps(3, 64, 128, 35)
    maps = write_maps(tmp_path / "unpaired", labels, instances)
    (maps / "k001_gtFine_instanceIds.png").unlink()
    assert build(tiny_package, "onnxruntime", "--calibration", str(maps)) == 2
    assert "no instance map with key 'k001'" in capsys.readouterr().err
    one = write_maps(tmp_path / "one", labels[:1], instances[:1])
    assert build(tiny_package, "onnxruntime", "--calibration", str(one)) == 2
    assert "needs at least 2" in capsys.readouterr().err
    assert build(tiny_package, "onnxruntime", "--calibration", str(tmp_path / "none")) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not (tiny_package / "generator.int8.onnx").exists()


def test_a_large_folder_calibrates_on_an_evenly_spread_bounded_subset(
    tiny_package, tmp_path, monkeypatch
):
    from p2phd.export import int8

    labels, instances = quality.synthetic_maps(20, 32, 64, 35)
    maps = str(write_maps(tmp_path / "many", labels, instances))
    monkeypatch.setattr(int8, "MAX_MAPS", 6)
    decoded = []
    decode = int8.decode_pair
    monkeypatch.setattr(int8, "decode_pair", lambda lab, *a: decoded.append(lab) or decode(lab, *a))
    fake_calibration(monkeypatch, "subset")
    int8.calibrate(tiny_package, maps, (32, 64))
    record = ModelPackage(tiny_package).manifest.calibration["int8"]
    used = sorted(record["calibration_maps"] + record["held_out_maps"])
    assert used == [f"k{i:03d}" for i in (0, 3, 6, 10, 13, 16)] and len(decoded) == 6
    assert record["source"] == f"{maps} (6 of its 20 maps, evenly spaced)"


@pytest.mark.parametrize(
    ("size", "expected"),
    [((256, 512), 64), ((1024, 2048), 7), ((8192, 16384), 2)],  # 18, 288, 4608 MiB per map
)
def test_the_calibration_set_is_bounded_in_memory(size, expected):
    from p2phd.export import int8

    assert int8.map_limit(36, size) == expected
    assert expected == int8.MIN_MAPS or expected * 36 * size[0] * size[1] * 4 <= int8.MAX_SET_BYTES


@pytest.mark.parametrize(
    ("flags", "vendor", "family", "expected"),
    [
        ({"amx_int8", "avx512_vnni", "avx512f"}, "GenuineIntel", 6, 1024),  # AMX TDPBSSD
        ({"avx512_vnni", "avx512f"}, "GenuineIntel", 6, 128),  # 2 x 64 VPDPBUSD
        ({"avx512_vnni", "avx_vnni", "avx512f"}, "AuthenticAMD", 25, 64),  # Zen 4: 256-bit units
        ({"avx_vnni", "fma"}, "GenuineIntel", 6, 64),
        ({"avx512f"}, "GenuineIntel", 6, 32),  # no int8 dot products: the fp32 rate
    ],
)
def test_int8_peak_per_instruction_set(flags, vendor, family, expected):
    width, why = fma_per_cycle("int8", frozenset(flags), vendor, family)
    assert width == expected and why


def test_convolutions_the_search_keeps_in_float_are_recorded_and_read_float_weights(
    default_model, monkeypatch
):
    from p2phd.export import int8, sensitivity

    # A margin no all-int8 graph of this model meets (floor 52 dB; it measures ~48): the search
    # must put convolutions back in float, and the record and the graph must agree on which.
    monkeypatch.setattr(sensitivity, "CHECK_MARGIN", (12.0, 2))
    int8.calibrate(default_model, "synthetic", (64, 128))
    package = ModelPackage(default_model)
    kept = {k["node"]: k["why"] for k in package.manifest.calibration["int8"]["kept_in_float"]}
    assert kept and all(
        why.startswith("sensitivity search: all 30 convolutions") for why in kept.values()
    )
    graph = onnx.load(str(package.variant_path("int8"))).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    float_convs = {
        n.name
        for n in graph.node
        if n.op_type == "Conv" and producer.get(n.input[1]) != "DequantizeLinear"
    }
    assert float_convs == set(kept)
    search = package.manifest.calibration["int8"]["sensitivity_search"]
    assert search.startswith(f"{len(kept)} of 30 in float: 4 calibration maps: worst image")
    assert f"kept in float: {len(kept)} Conv" in describe_package(default_model)


def test_int8_build_refuses_a_backend_without_int8_before_calibrating(
    tiny_package, monkeypatch, capsys
):
    from p2phd.engine.backends import openvino
    from p2phd.export import int8

    def calibrate(*args):
        raise AssertionError("calibrated for a backend that cannot run int8")

    monkeypatch.setattr(int8, "calibrate", calibrate)
    monkeypatch.setattr(openvino, "int8_unsupported", lambda: "this CPU has no VNNI or AMX")
    manifest = (tiny_package / "manifest.json").read_text()
    assert build(tiny_package, "openvino", "--calibration", "synthetic") == 2
    assert "backend openvino: this CPU has no VNNI or AMX" in capsys.readouterr().err
    assert (tiny_package / "manifest.json").read_text() == manifest
    # torch is the reference the others are measured against: there is nothing to build.
    with pytest.raises(SystemExit):
        build(tiny_package, "torch", "--calibration", "synthetic")
    assert "invalid choice: 'torch'" in capsys.readouterr().err


def test_int8_on_a_backend_without_it_says_so_not_how_to_calibrate(tiny_package, monkeypatch):
    from p2phd.engine.backends import choose_precision, openvino

    package = ModelPackage(tiny_package)
    with pytest.raises(ConfigError, match="torch has no int8 mode") as e:
        choose_precision(package, "torch", "int8")
    assert "p2phd build" not in str(e.value)
    monkeypatch.setattr(openvino, "int8_unsupported", lambda: "this CPU has no VNNI or AMX")
    with pytest.raises(ConfigError, match="int8 refused: this CPU has no VNNI or AMX"):
        choose_precision(package, "openvino", "int8")


def test_build_closes_the_engine_and_the_reference(tiny_package, engine_cache_dir, monkeypatch):
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.backends.onnxruntime import OnnxRuntimeBackend
    from p2phd.engine.backends.torch import TorchBackend
    from p2phd.engine.core.build import build_engine

    closed = []
    for cls in (OnnxRuntimeBackend, TorchBackend):
        close = cls.close
        monkeypatch.setattr(cls, "close", lambda self, c=close: closed.append(self.name) or c(self))
    build_engine(tiny_package, "onnxruntime", "fp32", EngineOptions(sizes=[(32, 64)]))
    assert sorted(closed) == sorted(["onnxruntime", "torch"])


def fake_calibration(monkeypatch, doc: str) -> None:
    """NNCF replaced by a copy of the fp32 graph (marked `doc`, so each differs): what is
    tested is how the package is rewritten, not the quantizer."""
    from p2phd.export import int8, sensitivity

    def quantize(model, samples, input_name, kept):
        out = onnx.ModelProto()
        out.CopyFrom(model)
        out.doc_string = doc
        return out

    monkeypatch.setattr(int8, "quantize", quantize)
    monkeypatch.setattr(
        sensitivity, "keep_in_float", lambda *args: sensitivity.Search({}, None, "not run")
    )


def test_a_crash_while_recording_int8_leaves_the_package_usable_at_fp32(
    tiny_package, tiny_maps, tmp_path, monkeypatch
):
    from p2phd.export import int8

    labels, instances = tiny_maps
    fake_calibration(monkeypatch, "first")
    int8.calibrate(tiny_package, str(write_maps(tmp_path / "a", labels, instances)), (32, 64))
    assert ModelPackage(tiny_package).variant_path("int8") is not None

    def crash(*args):
        raise RuntimeError("killed between the graph and the manifest")

    fake_calibration(monkeypatch, "second")
    monkeypatch.setattr(int8, "_record", crash)
    other = write_maps(tmp_path / "b", labels[::-1], instances[::-1])
    with pytest.raises(RuntimeError, match="killed"):
        int8.calibrate(tiny_package, str(other), (32, 64))
    package = ModelPackage(tiny_package)  # verifies every listed file's sha256
    assert package.variant_path("int8") is None and "int8" not in package.manifest.calibration
    with Renderer(tiny_package, "onnxruntime", "fp32") as renderer:
        assert renderer.render(labels, instances).shape == (*labels.shape, 3)


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_damaged_int8_graph_is_named_with_its_remedy_which_works(
    damage, tiny_package, tiny_maps, tmp_path, monkeypatch, capsys
):
    from p2phd.export import int8

    labels, instances = tiny_maps
    maps = str(write_maps(tmp_path / "a", labels, instances))
    fake_calibration(monkeypatch, "first")
    int8.calibrate(tiny_package, maps, (32, 64))
    graph = tiny_package / "generator.int8.onnx"
    graph.unlink() if damage == "deleted" else flip_a_byte(graph)
    assert main(["info", str(tiny_package)]) == 2
    err = capsys.readouterr().err
    assert "generator.int8.onnx" in err and f"p2phd build {tiny_package} --precision int8" in err
    assert f"it was calibrated on {maps}" in err
    int8.calibrate(tiny_package, maps, (32, 64))  # the remedy
    package = ModelPackage(tiny_package)  # verifies every listed file's sha256
    assert package.variant_path("int8") == graph and onnx.load(str(graph)).doc_string == "first"
    assert package.manifest.calibration["int8"]["source"] == maps


def test_a_changed_generator_is_not_blessed_by_recalibrating(
    tiny_package, tiny_maps, tmp_path, monkeypatch
):
    from p2phd.common.errors import PackageError
    from p2phd.export import int8

    labels, instances = tiny_maps
    maps = str(write_maps(tmp_path / "a", labels, instances))
    fake_calibration(monkeypatch, "first")
    int8.calibrate(tiny_package, maps, (32, 64))
    (tiny_package / "generator.int8.onnx").unlink()
    flip_a_byte(tiny_package / "generator.onnx")
    manifest = (tiny_package / "manifest.json").read_bytes()
    with pytest.raises(PackageError, match="generator.onnx: sha256 .* re-export the package"):
        int8.calibrate(tiny_package, maps, (32, 64))
    assert (tiny_package / "manifest.json").read_bytes() == manifest


def test_a_second_calibration_of_a_package_waits_for_the_first(
    tiny_package, tiny_maps, tmp_path, monkeypatch, caplog
):
    import threading

    from p2phd.common.file_lock import locked
    from p2phd.export import int8

    labels, instances = tiny_maps
    maps = str(write_maps(tmp_path / "a", labels, instances))
    fake_calibration(monkeypatch, "second")
    lock = ModelPackage(tiny_package).engines_dir / int8.CALIBRATION_LOCK
    waiting = threading.Event()
    caplog.set_level(logging.WARNING, logger="p2phd.common.file_lock")
    monkeypatch.setattr(caplog.handler, "emit", lambda record: waiting.set())
    with locked(lock, "the first calibration"):  # another `p2phd build` holds it
        second = threading.Thread(target=int8.calibrate, args=(tiny_package, maps, (32, 64)))
        second.start()
        assert waiting.wait(30)
        assert second.is_alive() and ModelPackage(tiny_package).variant_path("int8") is None
    second.join(60)
    assert not second.is_alive()
    assert ModelPackage(tiny_package).variant_path("int8") is not None


def test_info_names_what_an_incomplete_calibration_record_lacks(
    tiny_package, tiny_maps, tmp_path, monkeypatch
):
    from p2phd.engine.core.package import write_manifest
    from p2phd.export import int8

    fake_calibration(monkeypatch, "first")
    int8.calibrate(tiny_package, str(write_maps(tmp_path / "a", *tiny_maps)), (32, 64))
    m = ModelPackage(tiny_package).manifest
    del m.calibration["int8"]["kept_in_float"]
    write_manifest(tiny_package, m)
    assert "calibration record lacks kept_in_float" in describe_package(tiny_package)


def test_a_quantizer_without_an_initializer_zero_point_is_named():
    from onnx import TensorProto, helper

    from p2phd.common.errors import PackageError
    from p2phd.engine.backends.qdq import signed_activations

    node = helper.make_node("QuantizeLinear", ["x", "scale"], ["q"], name="q_no_zero")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("q", TensorProto.UINT8, [1])],
        [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])],
    )
    with pytest.raises(PackageError, match="q_no_zero: a QuantizeLinear without"):
        signed_activations(helper.make_model(graph))


def test_tensorrt_without_onnx_says_how_to_install_it(trt_double, monkeypatch):
    import sys

    from p2phd.engine.backends.tensorrt import TensorRTBackend

    monkeypatch.setitem(sys.modules, "onnx", None)  # its import raises ImportError
    assert TensorRTBackend.availability() == "onnx is not installed (pip install onnx)"


def test_openvino_estimates_an_int8_graphs_memory_as_the_float_graphs(tmp_path):
    """An int8 weight's dequantization (Constant -> Convert -> Multiply) is folded into the weight
    when compiled: counted as activations, the 512p generator's int8 model was estimated at 6x
    its bf16 model's memory per pixel, and the memory budget released compiled models for it."""
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper

    from p2phd.engine.backends.openvino import _footprint

    w = np.random.default_rng(0).integers(-127, 128, (1024, 16, 3, 3)).astype(np.int8)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1024, 8, 8])
    scale = numpy_helper.from_array(np.full(1024, 0.01, np.float32), "scale")
    zero = numpy_helper.from_array(np.zeros(1024, np.int8), "zero")
    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    dq = helper.make_node("DequantizeLinear", ["wq", "scale", "zero"], ["w"], axis=0)
    models = {
        "float": ([conv], [numpy_helper.from_array(w.astype(np.float32) * 0.01, "w")]),
        "int8": ([dq, conv], [numpy_helper.from_array(w, "wq"), scale, zero]),
    }
    measured = {}
    for name, (nodes, inits) in models.items():
        path = tmp_path / f"{name}.onnx"
        graph = helper.make_graph(nodes, name, [x], [y], inits)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        measured[name] = _footprint(ov.Core().read_model(str(path)), 2)
    assert measured["int8"][0] < measured["float"][0] / 3  # int8 weights, not float
    assert measured["int8"][1] == measured["float"][1]  # the same activations


def test_openvino_estimates_a_uint8_input_at_a_byte_an_element():
    """The int8 graph cut at its first layer's uint8 levels takes them as its input: the infer
    request's input tensor holds a byte an element, not a float32's four."""
    import openvino as ov
    import openvino.opset13 as ops

    from p2phd.engine.backends.openvino import _footprint

    held = {}
    for dtype in (np.uint8, np.float32):
        x = ops.parameter([1, 64, 8, 8], dtype)
        y = ops.relu(ops.convert(x, np.float32))
        held[dtype] = _footprint(ov.Model([y], [x]), 2)[1]
    assert held[np.float32] - held[np.uint8] == 3 * 64 * 8 * 8
