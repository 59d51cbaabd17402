"""The editor page in headless Chromium (Debian's, driven by Playwright) on the default model.

Each test edits through real pointer events on the canvas and checks what a user sees: the
label map, the rendered image (against the engine's own render of the same maps), undo and the
downloaded PNGs. Skipped with a reason where Playwright or Chromium is missing.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile

import numpy as np
import pytest
from PIL import Image

from p2phd.common.decode import decode_instance, decode_label
from p2phd.engine.core.style import Style

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# This machine's closed network refuses Chromium's background connections: switch them off.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 15_000  # a functional bound for one edit to show up rendered (speed: benchmarks/)
ROAD, CAR = 7, 26


@pytest.fixture(scope="module")
def browser_context():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            accept_downloads=True,
            viewport={"width": 1400, "height": 800},
        )
        yield context
        context.close()


@pytest.fixture
def page(browser_context, editor_url):
    """The editor on a 256x128 synthetic scene, its first render shown."""
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(editor_url)
    wait_rendered(page)
    page.select_option("#scene-size", "256x128")
    page.fill("#scene-seed", "1")
    page.click("#new-scene")
    page.wait_for_function("p2phdEditor.state && p2phdEditor.state.width === 256")
    wait_rendered(page)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def wait_rendered(page) -> None:
    """Wait until every edit so far has been rendered and shown."""
    page.wait_for_function("p2phdEditor.shownSeq > 0 && p2phdEditor.settled()", timeout=WAIT_MS)


def state(page) -> dict:
    """The page's maps as numpy arrays, with its seed and per-instance clusters."""
    s = json.loads(
        page.evaluate(
            """() => { const s = p2phdEditor.state; return JSON.stringify({
                w: s.width, h: s.height, seed: s.seed, clusters: s.clusters,
                label: Array.from(s.label), instance: Array.from(s.instance)}); }"""
        )
    )
    shape = (s["h"], s["w"])
    return {
        "label": np.array(s["label"], np.uint8).reshape(shape),
        "instance": np.array(s["instance"], np.int32).reshape(shape),
        "seed": s["seed"],
        "clusters": {int(k): v for k, v in s["clusters"].items()},
    }


def shown_image(page) -> np.ndarray:
    b64 = page.evaluate(
        """async () => { const b = new Uint8Array(await p2phdEditor.lastImage.arrayBuffer());
            let s = ""; for (const x of b) s += String.fromCharCode(x); return btoa(s); }"""
    )
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def engine_render(renderer, s: dict) -> np.ndarray:
    style = Style(seed=s["seed"], by_instance=s["clusters"])
    return renderer.render(s["label"], s["instance"], style)[0]


def to_page(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of label-map pixel (x, y)."""
    box = page.locator("#labels").bounding_box()
    w, h = page.evaluate("[p2phdEditor.state.width, p2phdEditor.state.height]")
    return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h


def drag(page, points: list[tuple[int, int]]) -> None:
    page.mouse.move(*to_page(page, *points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*to_page(page, *p), steps=5)
    page.mouse.up()


def click(page, x: int, y: int) -> None:
    page.mouse.click(*to_page(page, x, y))


def road_row(s: dict) -> int:
    """A row that is mostly road in the lower part of the scene (free space to paint on)."""
    rows = (s["label"] == ROAD).mean(1)
    return int(np.argmax(rows))


def a_car(s: dict) -> tuple[int, int, int]:
    """(instance id, x, y) of the largest car, at a pixel deep inside it."""
    ids, counts = np.unique(s["instance"][s["label"] == CAR], return_counts=True)
    car = int(ids[np.argmax(counts)])
    ys, xs = np.nonzero(s["instance"] == car)
    i = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return car, int(xs[i]), int(ys[i])


def test_page_shows_the_models_palette_and_a_render(page, editor_renderer):
    names = page.eval_on_selector_all("#palette button", "bs => bs.map(b => b.dataset.class)")
    classes = editor_renderer.manifest.semantic_classes()
    assert names == [c.name for c in classes]
    np.testing.assert_array_equal(shown_image(page), engine_render(editor_renderer, state(page)))


def test_a_car_stroke_is_painted_and_rendered(page, editor_renderer):
    before = state(page)
    image_before = shown_image(page)
    y = road_row(before)
    page.click('[data-class="car"]')
    page.fill("#brush-size", "10")  # (range input: fill sets its value)
    drag(page, [(60, y), (120, y), (150, y - 3)])
    wait_rendered(page)
    after = state(page)
    new_ids = set(np.unique(after["instance"])) - set(np.unique(before["instance"]))
    assert len(new_ids) == 1 and next(iter(new_ids)) // 1000 == CAR  # one new car instance
    (car,) = new_ids
    assert (after["label"][after["instance"] == car] == CAR).all()
    assert after["label"][y, 60:120].tolist() == [CAR] * 60
    image = shown_image(page)
    assert not np.array_equal(image, image_before)
    # Latest wins: what is shown is the render of the final maps, not of a stroke midway,
    # and no render was ever shown after a newer one.
    np.testing.assert_array_equal(image, engine_render(editor_renderer, after))
    seqs = page.evaluate("p2phdEditor.renders.map(r => r.seq)")
    assert seqs == sorted(set(seqs))


def test_restyle_an_instance_then_undo_and_redo(page, editor_renderer):
    s0 = state(page)
    image0 = shown_image(page)
    car, x, y = a_car(s0)
    page.check("#tool-style")
    click(page, x, y)  # selects the car
    page.wait_for_selector('#instance-style button[data-cluster="2"]')
    click(page, x, y)  # cycles: seed's choice -> cluster 0
    wait_rendered(page)
    assert state(page)["clusters"] == {car: 0}
    page.click('#instance-style button[data-cluster="2"]')  # picks cluster 2
    wait_rendered(page)
    s2 = state(page)
    assert s2["clusters"] == {car: 2}
    np.testing.assert_array_equal(s2["label"], s0["label"])
    image2 = shown_image(page)
    assert not np.array_equal(image2, image0)
    np.testing.assert_array_equal(image2, engine_render(editor_renderer, s2))

    page.click("#undo")
    page.click("#undo")
    wait_rendered(page)
    assert state(page)["clusters"] == {}
    np.testing.assert_array_equal(shown_image(page), image0)
    page.keyboard.press("Control+y")
    page.keyboard.press("Control+y")
    wait_rendered(page)
    assert state(page)["clusters"] == {car: 2}
    np.testing.assert_array_equal(shown_image(page), image2)


def test_add_and_erase_instances(page):
    s0 = state(page)
    car, x, y = a_car(s0)
    page.check("#tool-erase")
    click(page, x, y)
    wait_rendered(page)
    s1 = state(page)
    gone = s0["instance"] == car
    assert car not in s1["instance"]
    # The car's pixels take the surrounding stuff class (a car stands on road).
    assert (s1["label"][gone] == ROAD).all() and (s1["instance"][gone] == ROAD).all()

    page.click('[data-class="car"]')
    page.check("#tool-add")
    ry = road_row(s1)
    drag(page, [(30, ry - 6), (70, ry + 4)])
    wait_rendered(page)
    s2 = state(page)
    added = set(np.unique(s2["instance"])) - set(np.unique(s1["instance"]))
    assert len(added) == 1
    (new,) = added
    assert new // 1000 == CAR and (s2["label"][ry - 6 : ry + 5, 30:71] == CAR).all()


def test_downloads_are_the_edited_maps_and_image(page, tmp_path):
    s = state(page)
    files = {}
    for what in ("label", "instance", "image"):
        with page.expect_download() as d:
            page.click(f"#download-{what}")
        files[what] = tmp_path / d.value.suggested_filename
        d.value.save_as(files[what])
    np.testing.assert_array_equal(decode_label(files["label"]), s["label"])
    np.testing.assert_array_equal(decode_instance(files["instance"]), s["instance"])
    image = np.asarray(Image.open(files["image"]).convert("RGB"))
    np.testing.assert_array_equal(image, shown_image(page))


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("notes.png", lambda s: b"plain text, not an image", "notes.png: not a PNG file"),
        ("big_class.png", lambda s: _png(np.full((16, 32), 99, np.uint8)), "class id 99"),
    ],
)
def test_a_bad_upload_shows_why_and_keeps_the_map(page, name, make, reason):
    before = state(page)
    page.set_input_files("#open-files", files=[
        {"name": name, "mimeType": "image/png", "buffer": make(before)}
    ])  # fmt: skip
    page.click("#open")
    page.wait_for_selector("#message.error", timeout=WAIT_MS)
    assert reason in page.text_content("#message")
    after = state(page)
    np.testing.assert_array_equal(after["label"], before["label"])
    np.testing.assert_array_equal(after["instance"], before["instance"])


def test_open_a_cityscapes_frames_files_picks_its_label_and_instance_maps(page, editor_renderer):
    """The files of one Cityscapes frame chosen together: labelIds and instanceIds are used by
    name; the colour picture and polygons.json are ignored."""
    label = np.full((64, 128), ROAD, np.uint8)
    label[:20] = 23  # sky
    instance = label.astype(np.uint16)
    label[30:50, 40:80] = CAR
    instance[30:50, 40:80] = CAR * 1000 + 4
    colour = np.stack([label * 7] * 3, axis=-1)
    key = "aachen_000000_000019_gtFine"
    page.set_input_files("#open-files", files=[
        {"name": f"{key}_color.png", "mimeType": "image/png", "buffer": _png(colour)},
        {"name": f"{key}_instanceIds.png", "mimeType": "image/png", "buffer": _png(instance)},
        {"name": f"{key}_labelIds.png", "mimeType": "image/png", "buffer": _png(label)},
        {"name": f"{key}_polygons.json", "mimeType": "application/json", "buffer": b"{}"},
    ])  # fmt: skip
    page.click("#open")
    page.wait_for_function("p2phdEditor.state.width === 128", timeout=WAIT_MS)
    wait_rendered(page)
    s = state(page)
    np.testing.assert_array_equal(s["label"], label)
    np.testing.assert_array_equal(s["instance"], instance)
    np.testing.assert_array_equal(shown_image(page), engine_render(editor_renderer, s))
