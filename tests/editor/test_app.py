"""The editor's HTTP side on the default model: palette, starting scene, uploads, renders."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from p2phd.common.errors import BackendUnavailable
from p2phd.engine.apps.editor.app import create_app
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.style import Style
from p2phd.train.synth import CAR, THING_CLASSES, render_scene


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


def maps_of(d: dict) -> tuple[np.ndarray, np.ndarray]:
    shape = (d["height"], d["width"])
    label = np.frombuffer(base64.b64decode(d["label"]), np.uint8).reshape(shape)
    instance = np.frombuffer(base64.b64decode(d["instance"]), "<i4").reshape(shape)
    return label, instance


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    s = render_scene(np.random.default_rng(3), 64, 128)
    return s.label, s.instance.astype(np.int32)


def post_render(client, label: bytes, instance: bytes | None, style: dict | None = None):
    data = {"label": (io.BytesIO(label), "l.png")}
    if instance is not None:
        data["instance"] = (io.BytesIO(instance), "i.png")
    if style is not None:
        data["style"] = json.dumps(style)
    return client.post("/api/render", data=data, content_type="multipart/form-data")


def test_palette_comes_from_the_package(client, default_model):
    info = client.get("/api/model").get_json()
    package = ModelPackage(default_model)
    expected = package.manifest.semantic_classes()
    assert [(c["id"], c["name"], tuple(c["color"])) for c in info["classes"]] == [
        (c.id, c.name, tuple(c.color)) for c in expected
    ]
    clusters = package.feature_clusters()
    assert {c["id"]: c["clusters"] for c in info["classes"] if c["clusters"]} == {
        k: len(v) for k, v in clusters.items()
    }
    car = next(c for c in info["classes"] if c["name"] == "car")
    assert car["clusters"] > 1
    # The palette's things are the classes the model was trained on as instances (buildings too),
    # which the editor's own synthetic scenes give instance ids.
    assert {c["id"] for c in info["classes"] if c["is_thing"]} == set(THING_CLASSES)
    assert info["label_nc"] == package.manifest.label_nc


def test_page_and_its_scripts_are_served_offline(client):
    page = client.get("/").get_data(as_text=True)
    assert "<canvas" in page and "http" not in page.replace("http-equiv", "")  # no CDN
    for name in ("editor.js", "png.js", "editor.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_render_returns_the_engines_image_as_png(client, editor_renderer, scene):
    label, instance = scene
    cars = sorted({int(i) for i in np.unique(instance) if i // 1000 == CAR})
    style = {"seed": 5, "instances": {str(cars[0]): 1}}
    r = post_render(client, png(label), png(instance.astype(np.uint16)), style)
    assert r.status_code == 200 and r.mimetype == "image/png"
    image = np.asarray(Image.open(io.BytesIO(r.data)))
    assert image.shape == (64, 128, 3)
    direct = editor_renderer.render(label, instance, Style(seed=5, by_instance={cars[0]: 1}))
    np.testing.assert_array_equal(image, direct[0])


def test_an_instance_style_changes_the_image(client, scene):
    label, instance = scene
    car = next(int(i) for i in np.unique(instance) if i // 1000 == CAR)
    lab, inst = png(label), png(instance.astype(np.uint16))
    a, b, a2 = (
        post_render(client, lab, inst, {"seed": 0, "instances": {str(car): k}}).data
        for k in (0, 1, 0)
    )
    assert a == a2
    diff = np.asarray(Image.open(io.BytesIO(a)), int) - np.asarray(Image.open(io.BytesIO(b)), int)
    changed = np.argwhere(np.abs(diff).sum(-1) > 0)
    assert len(changed) > 0
    # The change is centred on that car (the generator's receptive field blurs its border).
    ys, xs = np.nonzero(instance == car)
    assert abs(changed[:, 0].mean() - ys.mean()) < 16 and abs(changed[:, 1].mean() - xs.mean()) < 32


def test_scene_and_uploads_round_trip(client):
    d = client.get("/api/scene?seed=4&width=256&height=128").get_json()
    label, instance = maps_of(d)
    assert label.shape == (128, 256) and label.max() < 35
    things = instance[instance >= 1000]
    assert len(things) and set(np.unique(things // 1000)) <= set(THING_CLASSES)
    assert (things // 1000 == label[instance >= 1000]).all()
    r = client.post(
        "/api/decode",
        data={"label": (io.BytesIO(png(label)), "l.png"),
              "instance": (io.BytesIO(png(instance.astype(np.uint16))), "i.png")},
        content_type="multipart/form-data",
    )  # fmt: skip
    back = maps_of(r.get_json())
    np.testing.assert_array_equal(back[0], label)
    np.testing.assert_array_equal(back[1], instance)


def test_an_upload_without_instance_map_takes_class_ids(client, scene):
    label, _ = scene
    r = client.post(
        "/api/decode", data={"label": (io.BytesIO(png(label)), "l.png")},
        content_type="multipart/form-data",
    )  # fmt: skip
    back_label, back_instance = maps_of(r.get_json())
    np.testing.assert_array_equal(back_instance, label.astype(np.int32))


def frame_files(label: np.ndarray, instance: np.ndarray, key: str) -> list[tuple]:
    """One Cityscapes frame's gtFine files, as a user picks them together in the page."""
    colour = np.stack([label * 7] * 3, axis=-1)
    return [
        (io.BytesIO(png(colour)), f"{key}_gtFine_color.png"),
        (io.BytesIO(png(instance.astype(np.uint16))), f"{key}_gtFine_instanceIds.png"),
        (io.BytesIO(b'{"objects": []}'), f"{key}_gtFine_polygons.json"),
        (io.BytesIO(png(label)), f"{key}_gtFine_labelIds.png"),
    ]


def test_a_cityscapes_frames_files_open_by_name(client, scene):
    label, instance = scene
    files = frame_files(label, instance, "aachen_000000_000019")
    r = client.post("/api/decode", data={"files": files}, content_type="multipart/form-data")
    assert r.status_code == 200, r.get_json()
    d = r.get_json()
    assert d["opened"] == {
        "label": "aachen_000000_000019_gtFine_labelIds.png",
        "instance": "aachen_000000_000019_gtFine_instanceIds.png",
    }
    back = maps_of(d)
    np.testing.assert_array_equal(back[0], label)
    np.testing.assert_array_equal(back[1], instance)


def test_files_that_do_not_pair_are_named(client, scene):
    label, instance = scene
    files = frame_files(label, instance, "aachen_000000_000019")
    files[1] = (io.BytesIO(png(instance.astype(np.uint16))), "bremen_1_2_gtFine_instanceIds.png")
    r = client.post("/api/decode", data={"files": files}, content_type="multipart/form-data")
    assert r.status_code == 400
    assert "bremen_1_2_gtFine_instanceIds.png: no label map" in r.get_json()["error"]
    two = [(io.BytesIO(png(label)), "a.png"), (io.BytesIO(png(label)), "b_labelIds.png")]
    r = client.post("/api/decode", data={"files": two}, content_type="multipart/form-data")
    assert (
        r.status_code == 400 and "2 label maps among a.png, b_labelIds.png" in r.get_json()["error"]
    )


def _bad_uploads(label: np.ndarray, instance: np.ndarray):
    wrong_class = label.copy()
    wrong_class[3, 5] = 40
    rgb = np.stack([label] * 3, -1)
    return {
        "not a PNG": (b"GIF89a not a png", None, "street.png: not a PNG file"),
        "class the model lacks": (png(wrong_class), None, "class id 40 at index (3, 5)"),
        "colour label map": (png(rgb), None, "mode 'RGB' (a colour visualisation?)"),
        "wrong size": (png(label), png(instance[:, :64].astype(np.uint16)), "64x64 differs"),
    }


@pytest.mark.parametrize("case", ["not a PNG", "class the model lacks", "colour label map",
                                  "wrong size"])  # fmt: skip
@pytest.mark.parametrize("endpoint", ["/api/decode", "/api/render"])
def test_bad_uploads_say_why(client, scene, case, endpoint):
    label_png, instance_png, reason = _bad_uploads(*scene)[case]
    data = {"label": (io.BytesIO(label_png), "street.png")}
    if instance_png is not None:
        data["instance"] = (io.BytesIO(instance_png), "street_inst.png")
    r = client.post(endpoint, data=data, content_type="multipart/form-data")
    assert r.status_code == 400
    assert reason in r.get_json()["error"]


@pytest.mark.parametrize(
    ("query", "style", "reason"),
    [
        ("", "not json", "style: not valid JSON"),
        ("", '{"seed": -1}', "style.seed: -1 is outside"),
        ("", '{"instances": {"26000": 99}}', "chooses cluster 99"),
    ],
)
def test_bad_styles_say_why(client, scene, query, style, reason):
    label, instance = scene
    data = {
        "label": (io.BytesIO(png(label)), "l.png"),
        "instance": (io.BytesIO(png(instance.astype(np.uint16))), "i.png"),
        "style": style,
    }
    r = client.post("/api/render" + query, data=data, content_type="multipart/form-data")
    assert r.status_code == 400 and reason in r.get_json()["error"]


def test_scene_of_an_unknown_size_is_refused(client):
    r = client.get("/api/scene?width=500&height=256")
    assert r.status_code == 400 and "512x256" in r.get_json()["error"]


def test_remote_renderer_matches_the_local_one(scene, default_model):
    """`p2phd edit --server`: the same page, rendered by a running p2phd server."""
    from p2phd.engine.apps.editor.remote import RemoteRenderer
    from p2phd.engine.core.renderer import Renderer
    from p2phd.engine.serving.server import P2PHDServer, ServerConfig

    config = ServerConfig(default_model, port=0, backend="onnxruntime", precision="fp32")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = P2PHDServer(config)

    def call(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    port = call(server.start())
    remote = RemoteRenderer(f"127.0.0.1:{port}")
    try:
        label, instance = scene
        car = next(int(i) for i in np.unique(instance) if i // 1000 == CAR)
        app = create_app(remote, ModelPackage(default_model)).test_client()
        r = post_render(app, png(label), png(instance.astype(np.uint16)),
                        {"seed": 2, "instances": {str(car): 3}})  # fmt: skip
        with Renderer(default_model, backend="onnxruntime", precision="fp32") as local:
            expected = local.render(label, instance, Style(seed=2, by_instance={car: 3}))[0]
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r.data))), expected)
        bad = post_render(app, png(label), png(instance[:, :64].astype(np.uint16)))
        assert bad.status_code == 400 and "differs" in bad.get_json()["error"]
    finally:
        remote.close()
        call(server.stop(grace=1))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_remote_renderer_without_a_server_says_so():
    from p2phd.engine.apps.editor.remote import RemoteRenderer

    with pytest.raises(BackendUnavailable, match="127.0.0.1:9 is unavailable"):
        RemoteRenderer("127.0.0.1:9", timeout=5)
