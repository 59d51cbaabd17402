"""The model package a user gets from export: clean ONNX graphs that compute what the torch
networks compute, an fp16 variant within a stated error, and no half-written packages."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from p2phd.common.classes import SemanticClass
from p2phd.common.errors import ExportError
from p2phd.engine.backends.torch import TorchBackend
from p2phd.engine.core.package import ModelPackage
from p2phd.export import onnx_export, package_writer
from p2phd.export.package_writer import FP16_WARN, export_package
from p2phd.export.parity import check_parity, cpu_session, relative_error
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.family import example_input
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator

CFG = ModelConfig(label_nc=5, ngf=4, n_downsample_global=2, n_blocks_global=2)
FEAT = ModelConfig(label_nc=5, feat_num=2, ngf=4, n_downsample_global=2, n_blocks_global=1, nef=4)


def tiny(cfg: ModelConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_generator(cfg).eval()


def run_torch(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def test_generator_onnx_is_clean_dynamic_and_named_like_the_state_dict(tmp_path):
    g = tiny(CFG)
    classes = [SemanticClass(i, f"class {i}", (i, 2 * i, 3 * i)) for i in range(CFG.label_nc)]
    pkg = ModelPackage(export_package(tmp_path / "m", g, CFG, classes=classes, fp16=False))
    assert pkg.manifest.semantic_classes() == classes
    model = onnx.load(str(pkg.generator_path))
    assert model.opset_import[0].version >= 17
    assert set(g.state_dict()) <= {i.name for i in model.graph.initializer}
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("input", "image")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["N", CFG.input_nc, "H", "W"]
    assert {n.op_type for n in model.graph.node} <= {
        "Conv", "ConvTranspose", "InstanceNormalization", "Pad", "Relu", "Add", "Tanh"
    }  # fmt: skip

    x = example_input(CFG, 3, 24, 40).numpy()  # batch and size unlike the parity check
    got = cpu_session(pkg.generator_path).run(None, {"input": x})[0]
    assert got.shape == (3, 3, 24, 40)
    assert relative_error(got, run_torch(g, x)) <= 1e-4
    m = pkg.manifest
    assert ModelConfig.from_json(m.architecture) == CFG
    assert m.input_channels == CFG.input_nc and m.size_multiple == CFG.size_multiple
    assert m.parity["generator"] <= 1e-4 and m.exporter_version


def test_torch_reference_backend_rebuilds_from_manifest_and_onnx_initializers(tmp_path):
    """The engine's torch backend reads weights from generator.onnx by name: it must compute
    exactly what the exported network computes."""
    cfg = ModelConfig(label_nc=5, ngf=4, netG="local", n_downsample_global=1, n_blocks_global=1,
                      n_blocks_local=1)  # fmt: skip
    g = tiny(cfg, seed=1)
    pkg = ModelPackage(export_package(tmp_path / "m", g, cfg, fp16=False))
    x = example_input(cfg, 2, 16, 24).numpy()
    backend = TorchBackend(pkg, "fp32")
    np.testing.assert_allclose(backend.infer(x), run_torch(g, x), rtol=0, atol=1e-6)


def test_fp16_variant_keeps_io_float32_norms_fp32_and_error_within_bound(tmp_path):
    g = tiny(CFG, seed=2)
    pkg = ModelPackage(export_package(tmp_path / "m", g, CFG))
    path = pkg.variant_path("fp16")
    assert path is not None and path.name in pkg.manifest.files  # hashed like the rest
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    inits = {i.name: i.data_type for i in model.graph.initializer}
    assert all(inits[k] == TensorProto.FLOAT16 for k in g.state_dict())
    produced_by = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in ("InstanceNormalization", "Tanh"):
            cast = produced_by[node.input[0]]
            assert cast.op_type == "Cast" and cast.attribute[0].i == TensorProto.FLOAT

    x = example_input(CFG, 2, 32, 48).numpy()
    err = relative_error(cpu_session(path).run(None, {"input": x})[0], run_torch(g, x))
    assert 0 < err <= FP16_WARN  # nonzero: it really computes in fp16
    assert 0 < pkg.manifest.parity["fp16"] <= FP16_WARN


@pytest.mark.parametrize(
    "cfg", [FEAT, replace(FEAT, tail_skip=True)], ids=["original", "tail_skip"]
)
def test_encoder_and_features_enter_the_package(tmp_path, cfg):
    """Export checks the generator's parity; the encoder's graph is compared here."""
    g, enc = tiny(cfg), build_encoder(cfg).eval()
    clusters = {3: np.array([[0.5, -0.5]], np.float32), 1: np.zeros((4, 2), np.float32)}
    pkg = ModelPackage(export_package(tmp_path / "m", g, cfg, enc, clusters, fp16=False))
    assert pkg.manifest.encoder and pkg.manifest.features
    assert pkg.manifest.input_order == ["onehot:5", "edges:1", "features:2"]
    assert pkg.manifest.size_multiple == 2**FEAT.n_downsample_E  # the encoder's is stricter
    photo = np.random.default_rng(0).random((1, 3, 32, 32), np.float32) * 2 - 1
    got = cpu_session(pkg.encoder_path).run(None, {"image": photo})[0]
    with torch.no_grad():
        want = enc.features(torch.from_numpy(photo)).numpy()  # before instance pooling
    assert got.shape == (1, 2, 32, 32) and relative_error(got, want) <= 1e-4
    stored = pkg.feature_clusters()
    assert sorted(stored) == [1, 3] and np.array_equal(stored[3], clusters[3])


def test_a_failed_parity_check_installs_nothing(tmp_path, monkeypatch):
    g = tiny(CFG)
    wrong = tiny(CFG, seed=9)  # same architecture, other weights: the ONNX would be wrong

    def export_the_wrong_network(module, example, path, input_name, output_name):
        return onnx_export.export_onnx(wrong, example, path, input_name, output_name)

    monkeypatch.setattr(package_writer, "export_onnx", export_the_wrong_network)
    with pytest.raises(ExportError, match="relative error"):
        export_package(tmp_path / "m", g, CFG, fp16=False)
    assert list(tmp_path.iterdir()) == []  # no package, no staging leftovers


def test_check_parity_rejects_a_mismatched_model(tmp_path):
    g = tiny(CFG)
    path = onnx_export.export_onnx(g, torch.zeros(1, CFG.input_nc, 16, 16), tmp_path / "g.onnx",
                                   "input", "image")  # fmt: skip
    make = lambda b, h, w: example_input(CFG, b, h, w)  # noqa: E731
    assert check_parity(g, path, make, [(16, 16)]) <= 1e-4
    with pytest.raises(ExportError, match="limit is 0.0001"):
        check_parity(tiny(CFG, seed=5), path, make, [(16, 16), (16, 32)])


def test_reexport_replaces_the_package_and_drops_files_it_no_longer_has(tmp_path):
    out = tmp_path / "m"
    export_package(out, tiny(FEAT), FEAT, build_encoder(FEAT), {1: np.ones((1, 2))}, fp16=False)
    (out / "engines").mkdir()
    plain = ModelConfig(label_nc=5, ngf=4, n_downsample_global=2, n_blocks_global=1)
    export_package(out, tiny(plain), plain)
    pkg = ModelPackage(out)
    assert not pkg.manifest.encoder and not pkg.manifest.features and pkg.manifest.feat_num == 0
    assert not (out / "encoder.onnx").exists() and not (out / "features.npz").exists()
    assert (out / "engines").is_dir()


def test_models_over_the_protobuf_limit_use_one_external_data_file(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "PROTOBUF_LIMIT", 10_000)  # stand-in for 2 GB
    g = tiny(CFG)
    pkg = ModelPackage(export_package(tmp_path / "m", g, CFG))
    assert {"generator.onnx.data", "generator.fp16.onnx.data"} <= set(pkg.manifest.files)
    graph = onnx.load(str(pkg.generator_path), load_external_data=False).graph
    stored = {i.name: i.data_location for i in graph.initializer}
    assert all(stored[k] == TensorProto.EXTERNAL for k in g.state_dict() if k.endswith("weight"))
    x = example_input(CFG, 1, 16, 16).numpy()
    assert relative_error(TorchBackend(pkg, "fp32").infer(x), run_torch(g, x)) <= 1e-6


def test_inconsistent_inputs_are_refused_with_the_reason(tmp_path):
    with pytest.raises(ExportError, match="takes 6 input channels but the config says 8"):
        export_package(tmp_path / "m", tiny(CFG), FEAT)
    with pytest.raises(ExportError, match=r"class 1 have shape \[2, 3\]; expected \[k, 2\]"):
        export_package(tmp_path / "m", tiny(FEAT), FEAT, features={1: np.zeros((2, 3))})
    assert not (tmp_path / "m").exists()
