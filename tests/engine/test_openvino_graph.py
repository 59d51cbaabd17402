"""The OpenVINO graph rewrites (engine/backends/openvino_rewrites.py, openvino_first_layer.py):
narrow convolutions computed on a space-to-depth view, the phase biases an instance
normalisation cancels dropped, and the first convolution computed from the labels (in an int8
graph with the normalisation to the uint8 levels the next layer reads) give the same numbers,
and only where they apply."""

from __future__ import annotations

import numpy as np
import pytest

from p2phd.common.errors import ConfigError
from p2phd.engine.backends.openvino import FIRST_CONV_ENV, OpenVINOBackend
from p2phd.engine.backends.openvino_first_layer import (
    cut_first_conv,
    first_conv,
    narrow_dense_input,
    probe_first_conv,
    probe_levels,
    probe_shape,
)
from p2phd.engine.backends.openvino_graph import folded
from p2phd.engine.backends.openvino_rewrites import (
    drop_biases,
    droppable_biases,
    space_to_depth_narrow_convs,
)
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.kernels import one_hot_conv_levels, one_hot_labels
from tests.conftest import REPO

ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install openvino)")
ops = pytest.importorskip("openvino.opset13")


def conv_model(shape, weight, strides=(1, 1)) -> ov.Model:
    x = ops.parameter(shape, np.float32)
    y = ops.convolution(x, ops.constant(weight), list(strides), [0, 0], [0, 0], [1, 1])
    return ov.Model([ops.relu(y)], [x])


def run(model: ov.Model, *inputs: np.ndarray) -> np.ndarray:
    """`model`'s first output on `inputs`, compiled in float32."""
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled.create_infer_request().infer(dict(enumerate(inputs)))[0]


def op_types(model: ov.Model) -> list[str]:
    return [op.get_type_name() for op in model.get_ordered_ops()]


@pytest.mark.parametrize("batch_dim", [2, -1])  # a static batch, and the dynamic one batch > 1 uses
@pytest.mark.parametrize(("kernel", "channels_out"), [(7, 3), (3, 4), (5, 1)])
def test_a_narrow_convolution_on_blocks_computes_the_same(kernel, channels_out, batch_dim):
    rng = np.random.default_rng(kernel)
    weight = rng.normal(0, 0.1, (channels_out, 5, kernel, kernel)).astype(np.float32)
    x = rng.normal(0, 1, (2, 5, 18, 24)).astype(np.float32)  # 18x24: even, not a multiple of 4
    shape = ov.PartialShape([batch_dim, 5, 18, 24])
    plain = run(conv_model(shape, weight), x)
    model = conv_model(shape, weight)
    assert space_to_depth_narrow_convs(model) == 1
    assert {"SpaceToDepth", "DepthToSpace"} <= set(op_types(model))
    got = run(model, x)
    assert got.shape == plain.shape == (2, channels_out, 18 - kernel + 1, 24 - kernel + 1)
    np.testing.assert_allclose(got, plain, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "weight_shape", "strides"),
    [
        ((1, 5, 17, 24), (3, 5, 7, 7), (1, 1)),  # odd height: no 2x2 blocks
        ((1, 5, 18, 24), (5, 5, 7, 7), (1, 1)),  # 4 x 5 phases fill more than one vector
        ((1, 5, 18, 24), (3, 5, 7, 7), (2, 2)),  # strided
        ((1, 5, 18, 24), (3, 5, 4, 4), (1, 1)),  # even kernel
        ((1, 5, -1, 24), (3, 5, 7, 7), (1, 1)),  # size not known yet
    ],
)
def test_other_convolutions_are_left_as_they_are(shape, weight_shape, strides):
    model = conv_model(ov.PartialShape(list(shape)), np.ones(weight_shape, np.float32), strides)
    assert space_to_depth_narrow_convs(model) == 0
    assert "SpaceToDepth" not in op_types(model)


def image_layer(weight: np.ndarray, second_reader: bool) -> ov.Model:
    """A last layer as OpenVINO reads it from ONNX: a convolution, an Add of its bias reshaped
    to [1, 3, 1, 1], Tanh; with `second_reader`, the biased sum is an output too."""
    x = ops.parameter([2, 5, 18, 24], np.float32)
    y = ops.convolution(x, ops.constant(weight), [1, 1], [0, 0], [0, 0], [1, 1])
    shape = ops.constant(np.array([1, 3, 1, 1], np.int64))
    y = ops.add(y, ops.reshape(ops.constant(np.float32([0.5, -0.2, 0.1])), shape, False))
    return ov.Model([ops.tanh(y), *([y] if second_reader else [])], [x])


@pytest.mark.parametrize("second_reader", [False, True])
def test_a_narrow_convolutions_bias_and_tanh_run_before_the_interleave(second_reader):
    rng = np.random.default_rng(3)
    weight = rng.normal(0, 0.1, (3, 5, 7, 7)).astype(np.float32)
    x = rng.normal(0, 1, (2, 5, 18, 24)).astype(np.float32)
    plain = run(image_layer(weight, second_reader), x)
    model = image_layer(weight, second_reader)
    assert space_to_depth_narrow_convs(model) == 1
    types = op_types(model)
    assert (types.index("Tanh") < types.index("DepthToSpace")) == (not second_reader)
    np.testing.assert_allclose(run(model, x), plain, atol=1e-5)


def test_the_backend_compiles_the_default_models_last_convolution_on_blocks():
    backend = OpenVINOBackend(ModelPackage(REPO / "models" / "default"), "fp32")
    types = op_types(backend._shaped(1, 64, 128, cut=True)[0])
    assert types.count("SpaceToDepth") == 1  # the 7x7 convolution to the 3 image channels
    assert backend.cache_key().endswith("-s2d-v3-cut3-bias1")  # older blobs are not imported


def dense_input(package, maps):
    from p2phd.engine.core.renderer import Renderer
    from p2phd.engine.core.style import Style

    renderer = Renderer(package, "onnxruntime", "fp32")
    labels, instances = maps
    return renderer.dense_input(labels, instances, [Style(seed=1)] * len(labels))


def backend_at(package, mode, monkeypatch, precision="fp32"):
    monkeypatch.setenv(FIRST_CONV_ENV, mode)
    return OpenVINOBackend(ModelPackage(package), precision)


def test_the_first_convolution_is_read_off_the_graph_exactly(tiny_package_source):
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(tiny_package_source / "generator.onnx").graph
    conv = next(n for n in graph.node if n.op_type == "Conv")
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    model = ov.Core().read_model(tiny_package_source / "generator.onnx")
    found = probe_first_conv(ov.Core(), model, 35)
    weight, bias = weights[conv.input[1]], weights[conv.input[2]]
    assert found.channels_out == weight.shape[0] == 4 and found.label_nc == 35
    np.testing.assert_allclose(found.taps[..., :4], weight.transpose(2, 3, 1, 0), atol=1e-6)
    np.testing.assert_allclose(found.bias[:4], bias, atol=1e-6)


@pytest.mark.parametrize("name", ["tiny", "default"])  # default: its tail reads the input too
def test_label_maps_give_the_same_output_from_the_labels(
    name, tiny_package_source, tiny_maps, monkeypatch
):
    package = tiny_package_source if name == "tiny" else REPO / "models" / "default"
    x = dense_input(package, tiny_maps)
    whole = backend_at(package, "graph", monkeypatch)
    cut = backend_at(package, "labels", monkeypatch)
    assert whole.describe()["first_conv"] == "in the graph"
    assert cut.describe()["first_conv"] == "from the labels"
    assert op_types(cut._shaped(2, 32, 64, cut=True)[0]).count("Convolution") == (
        op_types(whole._shaped(2, 32, 64, cut=False)[0]).count("Convolution") - 1
    )
    np.testing.assert_allclose(cut.infer(x), whole.infer(x), atol=2e-5)
    labels = tiny_maps[0].astype(np.uint8)  # what the renderer hands over with x
    np.testing.assert_allclose(cut.infer_labeled(x, labels), whole.infer(x), atol=2e-5)


def test_the_default_models_tail_gets_only_the_feature_channels_it_reads(monkeypatch):
    """Its last convolution reads the instance features, the input's last 3 of 39 channels: the
    compiled model takes those, not the whole input for the CPU plugin to reorder."""
    backend = backend_at(REPO / "models" / "default", "labels", monkeypatch)
    model, dense = backend._shaped(2, 32, 64, cut=True)
    assert dense == range(36, 39) == range(36, backend.package.manifest.input_channels)
    assert list(model.inputs[1].get_partial_shape().to_shape()) == [2, 3, 32, 64]


def sliced_reader(channels=6) -> ov.Model:
    """A model whose second input x is read through two overlapping channel slices, 2:4 and
    3:5 (so 2:5 is what it needs)."""
    a = ops.parameter([2, 4, 8, 8], np.float32)
    x = ops.parameter([2, channels, 8, 8], np.float32)
    low = ops.slice(x, [2], [4], [1], [1])
    high = ops.slice(x, [-3], [5], [1], [1])  # 3:5 of 6
    return ov.Model([ops.add(a, ops.concat([low, high], 1))], [a, x])


def test_a_second_input_read_through_slices_is_narrowed_to_their_channels():
    rng = np.random.default_rng(0)
    a, x = rng.random((2, 4, 8, 8), np.float32), rng.random((2, 6, 8, 8), np.float32)
    whole = run(sliced_reader(), a, x)
    model, dense = narrow_dense_input(sliced_reader())
    assert dense == range(2, 5)
    assert list(model.inputs[1].get_partial_shape().to_shape()) == [2, 3, 8, 8]
    np.testing.assert_array_equal(run(model, a, np.ascontiguousarray(x[:, 2:5])), whole)


def test_a_second_input_read_otherwise_stays_whole():
    model = sliced_reader()
    a, x = model.get_parameters()
    extra = ops.add(model.get_results()[0].input_value(0), ops.reduce_sum(x, [1], True))
    model = ov.Model([extra], [a, x])  # x also read whole
    assert narrow_dense_input(model)[1] == range(6)
    assert narrow_dense_input(ov.Model([ops.relu(a)], [a]))[1] is None


@pytest.fixture(scope="module")
def local_package(tmp_path_factory):
    """A tiny coarse-to-fine generator: its global part reads the downsampled input."""
    import torch

    from p2phd.export.package_writer import export_package
    from p2phd.train.pix2pixhd.config import ModelConfig
    from p2phd.train.pix2pixhd.networks import build_generator

    torch.manual_seed(0)
    cfg = ModelConfig(label_nc=35, netG="local", ngf=8, n_downsample_global=1, n_blocks_global=1,
                      n_blocks_local=1)  # fmt: skip
    out = tmp_path_factory.mktemp("local") / "pkg"
    return export_package(out, build_generator(cfg), cfg, fp16=False)


@pytest.mark.parametrize(
    ("name", "reads_one_hot"), [("tiny", False), ("default", False), ("local", True)]
)
def test_the_renderer_writes_the_one_hot_channels_only_where_they_are_read(
    name, reads_one_hot, tiny_package_source, local_package, tiny_maps, monkeypatch
):
    """The tiny model's layers after the first read only its output, the default model's tail
    only the input's feature channels: the renderer leaves the one-hot channels unwritten. A
    local enhancer's global generator reads the whole downsampled input: it gets it all."""
    from p2phd.engine.core.renderer import Renderer

    package = {"tiny": tiny_package_source, "local": local_package}.get(
        name, REPO / "models" / "default"
    )
    images = {}
    for mode in ("graph", "labels"):
        monkeypatch.setenv(FIRST_CONV_ENV, mode)
        with Renderer(package, "openvino", "fp32") as r:
            assert r.backend.reads_one_hot == (mode == "graph" or reads_one_hot)
            images[mode] = r.render(*tiny_maps).astype(int)
            images[mode + " again"] = r.render(*tiny_maps).astype(int)  # a reused input buffer
    for key in ("labels", "labels again", "graph again"):
        assert np.abs(images[key] - images["graph"]).max() <= 1, key


def test_an_input_that_is_not_a_label_maps_runs_the_whole_graph(
    tiny_package_source, tiny_maps, monkeypatch
):
    x = dense_input(tiny_package_source, tiny_maps)
    x[:, :35] *= 0.5  # no longer one-hot
    whole = backend_at(tiny_package_source, "graph", monkeypatch)
    cut = backend_at(tiny_package_source, "labels", monkeypatch)
    np.testing.assert_allclose(cut.infer(x), whole.infer(x), atol=1e-6)


def test_the_switch_is_checked(tiny_package_source, monkeypatch):
    with pytest.raises(ConfigError, match=FIRST_CONV_ENV):
        backend_at(tiny_package_source, "gpu", monkeypatch)


def first_layer(pad_mode="reflect", pads=3, kernel=7, strides=(1, 1), quantize=False):
    x = ops.parameter([1, 6, 16, 16], np.float32)
    y = ops.pad(x, [0, 0, pads, pads], [0, 0, pads, pads], pad_mode)
    if quantize:
        y = ops.fake_quantize(y, 0.0, 1.0, 0.0, 1.0, 256)
    weight = np.ones((8, 6, kernel, kernel), np.float32)
    y = ops.convolution(y, ops.constant(weight), list(strides), [0, 0], [0, 0], [1, 1])
    return ov.Model([ops.relu(y)], [x])


def test_a_quantized_first_layer_is_found():
    found = first_conv(first_layer(quantize=True))
    assert found is not None and found.kernel == 7


@pytest.mark.parametrize(
    "layer",
    [
        {"pad_mode": "constant"},  # zero padding: not what the lookup computes at the border
        {"pads": 2},  # a 7x7 kernel over a 2-pixel pad: the output is smaller than the input
        {"strides": (2, 2)},
        {"pads": 1, "kernel": 2},
    ],
)
def test_other_first_layers_stay_in_the_graph(layer):
    assert first_conv(first_layer(**layer)) is None


STEP = 0.03  # the int8 layer's input step


def int8_first_layers(levels=256, zero_point=0.0, step_shape=()) -> ov.Model:
    """A first layer as OpenVINO reads an int8 graph's: a reflection-padded 7x7 convolution of
    the one-hot labels (5) and an edge channel, instance normalisation with a scale and shift,
    ReLU, a quantizer to uint8 levels and back (step STEP), and the int8 layer after it."""
    rng = np.random.default_rng(8)
    x = ops.parameter([-1, 6, -1, -1], np.float32)
    y = ops.pad(x, [0, 0, 3, 3], [0, 0, 3, 3], "reflect")
    y = ops.convolution(y, rng.normal(0, 0.3, (8, 6, 7, 7)).astype(np.float32), [1, 1], [0, 0],
                        [0, 0], [1, 1])  # fmt: skip
    y = ops.add(y, rng.normal(0, 1, (1, 8, 1, 1)).astype(np.float32))
    y = ops.mvn(y, np.array([2, 3], np.int64), True, 1e-5, "inside_sqrt")
    y = ops.multiply(y, rng.uniform(0.5, 2, (1, 8, 1, 1)).astype(np.float32))
    y = ops.add(y, rng.normal(0, 0.5, (1, 8, 1, 1)).astype(np.float32))
    y = ops.relu(y)
    low, high, top = (np.float32(v) for v in (0, 255 * STEP, 255))
    y = ops.fake_quantize(y, low, high, low, top, levels)
    y = ops.convert(ops.convert(y, "u8"), "f32")
    y = ops.subtract(y, np.float32(zero_point))
    y = ops.multiply(y, np.full(step_shape, STEP, np.float32))
    y = ops.convolution(y, rng.normal(0, 0.1, (4, 8, 3, 3)).astype(np.float32), [1, 1], [1, 1],
                        [1, 1], [1, 1])  # fmt: skip
    return ov.Model([y], [x])


def label_input(shape=(2, 16, 24)) -> np.ndarray:
    labels = np.random.default_rng(9).integers(0, 5, shape).repeat(2, axis=2)[..., : shape[2]]
    x = (labels[:, None] == np.arange(6)[None, :, None, None]).astype(np.float32)
    x[:, 5] = np.random.default_rng(10).random(shape) < 0.2  # edges
    return x


def test_an_int8_graph_starts_at_the_levels_its_next_layer_reads():
    core, model = ov.Core(), int8_first_layers()
    conv = probe_first_conv(core, model, 5)
    levels = probe_levels(core, folded(model, probe_shape(6, 1)), conv)
    assert levels.step == pytest.approx(STEP) and levels.eps == pytest.approx(1e-5)
    x = label_input()
    model.reshape(list(x.shape))
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    whole = core.compile_model(model.clone(), "CPU", config).create_infer_request().infer({0: x})[0]
    cut = cut_first_conv(model.clone(), levels=True)
    first = cut.inputs[0]
    assert len(cut.inputs) == 1 and first.get_element_type() == ov.Type.u8
    assert list(first.get_partial_shape().to_shape()) == [2, 16, 24, 8]  # channels last
    assert "MVN" not in op_types(cut) and op_types(cut).count("Convolution") == 1
    start = one_hot_conv_levels(x, one_hot_labels(x, 5), conv, levels)
    out = core.compile_model(cut, "CPU", config).create_infer_request().infer({0: start})[0]
    # a level apart where a value lies on a rounding boundary: STEP times a weight or so
    assert np.abs(out - whole).max() < STEP and np.mean(np.abs(out - whole) > 1e-4) < 0.02


@pytest.mark.parametrize(
    "chain",
    [
        {"levels": 255},  # not the 0..255 levels the kernel writes
        {"zero_point": 3.0},
        {"step_shape": (1, 8, 1, 1)},  # a step per channel: not one value for all
    ],
)
def test_other_quantizers_leave_the_normalisation_in_the_graph(chain):
    core, model = ov.Core(), int8_first_layers(**chain)
    conv = probe_first_conv(core, model, 5)
    assert conv is not None
    assert probe_levels(core, folded(model, probe_shape(6, 1)), conv) is None


def upsampling(phase_biases, mode="blocks_first", second_reader=False) -> ov.Model:
    """Four phase convolutions (each with a bias) concatenated, interleaved by DepthToSpace and
    instance-normalised: a transposed convolution as the int8 graph computes it (with
    `second_reader`, the concatenation is an output too)."""
    rng = np.random.default_rng(11)
    x = ops.parameter([2, 3, 8, 8], np.float32)
    phases = []
    for bias in phase_biases:
        weight = rng.normal(0, 1, (4, 3, 2, 2)).astype(np.float32)
        y = ops.convolution(x, weight, [1, 1], [0, 0], [1, 1], [1, 1])
        phases.append(ops.add(y, np.asarray(bias, np.float32).reshape(1, 4, 1, 1)))
    joined = ops.concat(phases, 1)
    y = ops.depth_to_space(joined, mode, 2)
    outputs = [ops.mvn(y, np.array([2, 3], np.int64), True, 1e-5, "inside_sqrt")]
    return ov.Model(outputs + ([joined] if second_reader else []), [x])


@pytest.mark.parametrize("mode", ["blocks_first", "depth_first"])
def test_a_bias_the_normalisation_subtracts_is_dropped_and_nothing_changes(mode):
    bias = [0.5, -1.0, 2.0, 3.0]
    if mode == "depth_first":  # channel c of the output reads input channels 4c .. 4c+3
        phase_biases = [[bias[(4 * p + c) // 4] for c in range(4)] for p in range(4)]
    else:  # channel c reads input channels c, 4+c, 8+c, 12+c: the same bias in every phase
        phase_biases = [bias] * 4
    model = upsampling(phase_biases, mode)
    names = droppable_biases(folded(model, [2, 3, 8, 8]))
    assert len(names) == 4
    x = np.random.default_rng(12).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)
    before = run(model.clone(), x)
    assert drop_biases(model, names) == 4 and "Add" not in op_types(model)
    np.testing.assert_allclose(run(model, x), before, atol=1e-4)


@pytest.mark.parametrize(
    ("phase_biases", "second_reader"),
    [
        ([[0.5, -1.0, 2.0, 3.0]] * 3 + [[0.5, -1.0, 2.0, 3.5]], False),  # one phase differs
        ([[0.5, -1.0, 2.0, 3.0]] * 4, True),  # the concatenation read by more than the MVN
    ],
)
def test_other_biases_are_kept(phase_biases, second_reader):
    model = upsampling(phase_biases, second_reader=second_reader)
    assert droppable_biases(folded(model, [2, 3, 8, 8])) == set()
