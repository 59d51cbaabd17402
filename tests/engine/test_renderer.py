"""The Renderer end to end on the tiny package: styles, sizes, batches and files."""

import io

import numpy as np
import pytest
from PIL import Image

from p2phd.common.errors import InputError
from p2phd.engine.core.package import FEATURES, ModelPackage, write_manifest
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style

LABEL_NC, FEAT = 35, 3
FEATURE_CHANNELS = slice(LABEL_NC + 1, LABEL_NC + 1 + FEAT)
CAR = (slice(20, 28), slice(8, 24))  # the car instance 26001 in `tiny_maps`


@pytest.fixture(scope="module")
def onnxruntime(tiny_package_source):
    return Renderer(tiny_package_source, "onnxruntime", "fp32")


def test_a_seed_renders_the_same_image_across_runs_and_fp32_backends(
    tiny_package_source, tiny_maps, onnxruntime
):
    first = onnxruntime.render(*tiny_maps, style=Style(seed=11))
    again = Renderer(tiny_package_source, "onnxruntime", "fp32").render(
        *tiny_maps, style=Style(seed=11)
    )
    assert np.array_equal(first, again)
    other = Renderer(tiny_package_source, "openvino", "fp32").render(
        *tiny_maps, style=Style(seed=11)
    )
    assert np.abs(first.astype(int) - other).max() <= 1


def test_different_seeds_give_different_instance_features(tiny_maps, onnxruntime):
    labels, instances = tiny_maps
    inputs = [onnxruntime.dense_input(labels, instances, [Style(seed=s)] * 2) for s in range(6)]
    car = [x[0, FEATURE_CHANNELS, CAR[0], CAR[1]] for x in inputs]
    # Each car pixel carries its instance's cluster centre: constant over the instance ...
    assert all(np.ptp(c, axis=(1, 2)).max() == 0 for c in car)
    # ... and across seeds more than one of the 5 car clusters is drawn.
    assert len({tuple(c[:, 0, 0]) for c in car}) > 1
    images = [onnxruntime.render(labels, instances, Style(seed=s)) for s in range(6)]
    assert any(not np.array_equal(images[0], im) for im in images[1:])


def test_explicit_choices_set_the_instance_features(tiny_package_source, tiny_maps, onnxruntime):
    labels, instances = tiny_maps
    centres = ModelPackage(tiny_package_source).feature_clusters()
    by_class = onnxruntime.dense_input(labels, instances, [Style(by_class={26: 4})] * 2)
    assert np.allclose(by_class[0, FEATURE_CHANNELS, 24, 10], centres[26][4])
    by_instance = onnxruntime.dense_input(
        labels, instances, [Style(by_class={26: 4}, by_instance={26001: 1})] * 2
    )
    assert np.allclose(by_instance[1, FEATURE_CHANNELS, 24, 10], centres[26][1])
    raw = onnxruntime.dense_input(
        labels, instances, [Style(vectors={26001: [0.5, -0.5, 0.25]})] * 2
    )
    assert np.allclose(raw[0, FEATURE_CHANNELS, 24, 10], [0.5, -0.5, 0.25])
    with pytest.raises(InputError, match="cluster 9.*5 clusters"):
        onnxruntime.render(labels, instances, Style(by_class={26: 9}))


def test_classes_without_clusters_get_zero_features(tiny_package, tiny_maps):
    labels, instances = tiny_maps
    sky = np.full_like(labels, 23)  # no clusters for sky
    r = Renderer(tiny_package, "onnxruntime", "fp32")
    x = r.dense_input(sky, sky.astype(np.int32), [Style(seed=1)] * 2)
    assert not x[:, FEATURE_CHANNELS].any()
    # A package without features.npz at all: every feature channel is zero, never garbage.
    (tiny_package / FEATURES).unlink()
    package = ModelPackage(tiny_package, verify=False)
    write_manifest(tiny_package, package.manifest)
    r = Renderer(tiny_package, "onnxruntime", "fp32")
    x = r.dense_input(labels, instances, [Style(seed=1)] * 2)
    assert x.shape[1] == LABEL_NC + 1 + FEAT and not x[:, FEATURE_CHANNELS].any()


def test_reference_photo_encodes_one_feature_vector_per_instance(tiny_maps, onnxruntime):
    labels, instances = tiny_maps
    photo = np.random.default_rng(5).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    x = onnxruntime.dense_input(
        labels[:1], instances[:1], [Style(reference=photo)], photos=photo[None]
    )
    car = x[0, FEATURE_CHANNELS, CAR[0], CAR[1]]
    assert np.ptp(car, axis=(1, 2)).max() < 1e-6 and np.abs(car).max() > 0
    encoder = onnxruntime._encoder_for()
    image = (photo[None].transpose(0, 3, 1, 2) / 127.5 - 1).astype(np.float32)
    features = encoder.session.run(None, {"image": image})
    expected = features[0][0][:, instances[0] == 26001].mean(axis=1)
    assert np.allclose(car[:, 0, 0], expected, atol=1e-5)
    image = onnxruntime.render(labels[:1], instances[:1], Style(reference=photo))
    assert image.shape == (1, 32, 64, 3)


@pytest.mark.parametrize("policy", ["pad", "resize"])
def test_sizes_off_the_multiple_come_back_at_input_size(tiny_package_source, tiny_maps, policy):
    labels, instances = tiny_maps
    r = Renderer(tiny_package_source, "onnxruntime", "fp32", size_policy=policy)
    out = r.render(labels[:, :30, :45], instances[:, :30, :45])
    assert out.shape == (2, 30, 45, 3)
    if policy == "pad":  # the same as rendering the reflect-padded maps and cropping
        pad = ((0, 0), (0, 2), (0, 3))
        padded = r.render(
            np.pad(labels[:, :30, :45], pad, "reflect"),
            np.pad(instances[:, :30, :45], pad, "reflect"),
        )
        assert np.array_equal(out, padded[:, :30, :45])


def test_reject_policy_raises(tiny_package_source, tiny_maps):
    r = Renderer(tiny_package_source, "onnxruntime", "fp32", size_policy="reject")
    with pytest.raises(InputError, match="multiple of 4"):
        r.render(tiny_maps[0][:, :30, :45])


def test_a_list_of_sizes_is_grouped_and_kept_in_order(tiny_maps, onnxruntime):
    labels, instances = tiny_maps
    maps = [labels[0], labels[1, :16, :32], labels[1]]
    insts = [instances[0], instances[1, :16, :32], instances[1]]
    out = onnxruntime.render(maps, insts)
    assert [o.shape for o in out] == [(32, 64, 3), (16, 32, 3), (32, 64, 3)]
    assert np.array_equal(out[2], onnxruntime.render(labels[1], instances[1])[0])
    assert np.array_equal(out[1], onnxruntime.render(maps[1], insts[1])[0])


def test_render_files_matches_rendering_arrays(tmp_path, tiny_maps, onnxruntime):
    labels, instances = tiny_maps
    Image.fromarray(labels[0]).save(tmp_path / "label.png")
    buf = io.BytesIO()
    Image.fromarray(instances[0].astype(np.uint16)).save(buf, format="PNG")
    image = onnxruntime.render_files(tmp_path / "label.png", buf.getvalue(), Style(seed=2))
    assert np.array_equal(image, onnxruntime.render(labels[0], instances[0], Style(seed=2))[0])


def test_bad_arrays_are_input_errors(tiny_maps, onnxruntime):
    labels, instances = tiny_maps
    with pytest.raises(InputError, match="label_nc 35"):
        onnxruntime.render(labels + 40, instances)
    with pytest.raises(InputError, match="shape"):
        onnxruntime.render(labels, instances[:, :16])
    with pytest.raises(InputError, match="uint8"):
        onnxruntime.render(labels.astype(np.int64), instances)


def test_concurrent_renders_from_threads_match_sequential_ones(tiny_package_source, tiny_maps):
    from concurrent.futures import ThreadPoolExecutor

    labels, instances = tiny_maps
    r = Renderer(tiny_package_source, "openvino", "fp32")
    expected = [r.render(labels, instances, Style(seed=s)) for s in range(6)]
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(lambda s: r.render(labels, instances, Style(seed=s)), range(6)))
    assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_a_batch_past_the_input_budget_runs_as_several_calls_with_the_same_images(
    tiny_package_source, tiny_maps, monkeypatch
):
    from p2phd.engine.core import renderer as module

    labels, instances = (np.concatenate([a] * 3) for a in tiny_maps)  # 6 maps of 32x64
    styles = [Style(seed=s) for s in range(6)]
    r = Renderer(tiny_package_source, "onnxruntime", "fp32")
    whole = r.render(labels, instances, styles)
    per_image = r.manifest.input_channels * 32 * 64 * 4
    monkeypatch.setattr(module, "MAX_CALL_INPUT_BYTES", 2 * per_image)  # two images a call
    calls = []
    infer = r.backend.infer
    monkeypatch.setattr(r.backend, "infer", lambda x: calls.append(len(x)) or infer(x))
    assert np.array_equal(r.render(labels, instances, styles), whole)
    assert calls == [2, 2, 2]
