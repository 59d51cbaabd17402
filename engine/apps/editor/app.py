"""The editor's HTTP side: the page, model info, a starting scene, upload decoding and renders.

Every answer to a bad request is JSON ``{"error": reason}`` with a 4xx status naming the field;
requests from other origins or by unknown Host names are refused (see `access`), and at most
`max_renders` uploads are decoded or rendered at once (more wait briefly, then get 503 with
Retry-After), so a burst of requests cannot multiply the engine's memory.

Maps travel as PNG (label: 8-bit class ids, instance: 16-bit ids) both ways, decoded and
validated here with the engine's own checks, so a bad upload comes back as JSON
``{"error": reason}`` (status 400) and the page keeps its last good state. Decoded maps go to
the page as base64 raw arrays (uint8 labels, little-endian int32 instances), because a browser
canvas cannot read 16-bit PNGs.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from p2phd.common.decode import decode_pair, validate_maps
from p2phd.common.errors import InputError, P2PHDError
from p2phd.common.pairing import choose_maps
from p2phd.common.png import encode_png
from p2phd.engine.apps.editor.access import allowed_hosts, refusal
from p2phd.engine.apps.editor.config import EditorConfig
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.style import SEED_RANGE, Style
from p2phd.engine.serving.render_core import RendererLike

STATIC = Path(__file__).parent / "static"
EDITOR_MAX_PIXELS = 2048 * 1024  # a Cityscapes frame; larger maps stop being interactive
MAX_UPLOAD_BYTES = 32 << 20
SCENE_SIZES = ((256, 128), (512, 256), (1024, 512))
RENDER_WAIT_S = 10.0  # how long one more waits for a free slot before its 503
ID_RANGE = (0, 2**31 - 1)  # instance ids and cluster indices travel as int32
# HTTP status per error family; anything else a P2PHDError names is the engine's fault.
_STATUS = {"INVALID_ARGUMENT": 400, "RESOURCE_EXHAUSTED": 503, "UNAVAILABLE": 503}

log = logging.getLogger(__name__)


class Busy(P2PHDError):
    """Every render slot stayed taken while the request waited."""

    grpc_status = "RESOURCE_EXHAUSTED"


def model_info(package: ModelPackage, renderer: RendererLike) -> dict[str, Any]:
    """What the page needs: the palette (names, colours, thing or stuff, clusters) and sizes."""
    m = package.manifest
    clusters = package.feature_clusters()
    classes = [
        {
            "id": c.id,
            "name": c.name,
            "color": list(c.color),
            "is_thing": c.is_thing,
            "clusters": len(clusters.get(c.id, ())),
        }
        for c in m.semantic_classes()
        if c.id < m.label_nc
    ]
    return {
        "label_nc": m.label_nc,
        "instance": m.instance,
        "feat_num": m.feat_num,
        "size_multiple": m.size_multiple,
        "max_pixels": EDITOR_MAX_PIXELS,
        "scene_sizes": [list(s) for s in SCENE_SIZES],
        "classes": classes,
        "renderer": renderer.describe(),
        "model_dir": str(package.path),
    }


def maps_json(labels: np.ndarray, instances: np.ndarray) -> dict[str, Any]:
    """Label and instance maps as the page reads them (base64 uint8 and little-endian int32)."""
    h, w = labels.shape
    return {
        "width": w,
        "height": h,
        "label": base64.b64encode(np.ascontiguousarray(labels, np.uint8).tobytes()).decode(),
        "instance": base64.b64encode(np.ascontiguousarray(instances, "<i4").tobytes()).decode(),
    }


def start_scene(seed: int, width: int, height: int, label_nc: int) -> dict[str, Any]:
    """A procedural street scene (Cityscapes ids) to start editing from."""
    from p2phd.train.synth import render_scene  # numpy only: no torch at run time

    scene = render_scene(np.random.default_rng(seed), height, width)
    try:
        validate_maps(scene.label, None, label_nc, name="the synthetic scene")
    except InputError as e:
        raise InputError(f"{e}: open a label map made for this model instead") from None
    return maps_json(scene.label, scene.instance)


def checked_int(value: Any, field: str, bounds: tuple[int, int]) -> int:
    """`value` if it is an integer within `bounds`, else an InputError naming `field`."""
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field}: expected an integer, got {value!r:.40}")
    if not lo <= value <= hi:
        raise InputError(f"{field}: {value} is outside {lo}..{hi}")
    return value


def int_of(text: str, field: str, bounds: tuple[int, int]) -> int:
    """The decimal integer `text` (a query parameter, a JSON key), checked like `checked_int`."""
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise InputError(f"{field}: {text!r:.40} is not an integer") from None
    return checked_int(value, field, bounds)


def _no_constant(name: str):
    raise InputError(f"style: {name} is not a number JSON allows")


def style_from_json(text: str | None) -> Style:
    """The page's style: ``{"seed": int, "instances": {"<id>": cluster}}``."""
    if not text:
        return Style()
    try:
        d = json.loads(text, parse_constant=_no_constant)
    except ValueError as e:  # JSONDecodeError
        raise InputError(f"style: not valid JSON ({e})") from None
    except RecursionError:
        raise InputError("style: JSON nested too deeply") from None
    if not isinstance(d, dict):
        raise InputError("style: expected {'seed': int, 'instances': {id: cluster}}")
    seed = checked_int(d.get("seed", 0), "style.seed", SEED_RANGE)
    instances = d.get("instances", {})
    if not isinstance(instances, dict):
        raise InputError(f"style.instances: expected {{id: cluster}}, got {instances!r:.40}")
    by_instance = {
        int_of(k, "style.instances key", ID_RANGE): checked_int(
            v, f"style.instances[{k!r:.20}]", ID_RANGE
        )
        for k, v in instances.items()
    }
    return Style(seed=seed, by_instance=by_instance)


def _uploads(label_nc: int) -> tuple[np.ndarray, np.ndarray | None, dict[str, str | None]]:
    """Decode and validate the request's label map and optional instance map, and their names.

    They come as the `label` and `instance` fields, or as any number of `files` (the files a
    user picked together, e.g. a Cityscapes frame's), chosen by name (`pairing.choose_maps`).
    """
    files = request.files.getlist("files")
    if files:
        by_name = {f.filename or f"file {i}": f for i, f in enumerate(files)}
        label_name, instance_name = choose_maps(list(by_name))
        label, instance = by_name[label_name], by_name.get(instance_name or "")
    else:
        label, instance = request.files.get("label"), request.files.get("instance")
        if label is None:
            raise InputError("no label map uploaded (form field 'label' or 'files')")
    names = {
        "label": label.filename or "label map",
        "instance": (instance.filename or "instance map") if instance else None,
    }
    labels, instances = decode_pair(
        label.read(),
        instance.read() if instance else None,
        label_nc,
        max_pixels=EDITOR_MAX_PIXELS,
        label_name=names["label"],
        instance_name=names["instance"],
    )
    return labels, instances, names


def create_app(
    renderer: RendererLike,
    package: ModelPackage,
    *,
    host: str = EditorConfig.host,
    allow_hosts: Iterable[str] = (),
    max_renders: int = EditorConfig.max_renders,
    render_wait: float = RENDER_WAIT_S,
) -> Flask:
    """The editor's Flask app for `renderer` (a Renderer or RemoteRenderer) and its package,
    served at `host` (and reached by the names in `allow_hosts`). A decode or render waits up
    to `render_wait` seconds for one of `max_renders` slots."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    info = model_info(package, renderer)
    label_nc = info["label_nc"]
    hosts = allowed_hosts(host, allow_hosts)
    slots = threading.BoundedSemaphore(max(1, max_renders))

    @contextlib.contextmanager
    def work_slot():
        if not slots.acquire(timeout=render_wait):
            raise Busy(f"the editor is busy ({max_renders} renders at once): retry shortly")
        try:
            yield
        finally:
            slots.release()

    @app.before_request
    def check_access():
        api = request.path.startswith("/api/")
        why = refusal(
            request.host,
            request.headers.get("Origin") if api else None,
            request.headers.get("Sec-Fetch-Site") if api else None,
            request.scheme,
            hosts,
        )
        if why is not None:
            return jsonify(error=why), 403
        return None

    @app.errorhandler(P2PHDError)
    def p2phd_error(e: P2PHDError):
        response = jsonify(error=str(e))
        response.status_code = _STATUS.get(e.grpc_status, 500)
        if response.status_code == 503:
            response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(413)
    def too_large(_e):
        return jsonify(error=f"upload larger than {MAX_UPLOAD_BYTES >> 20} MiB"), 413

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return jsonify(error=f"{e.name}: {e.description}"), e.code

    @app.errorhandler(Exception)
    def internal_error(e: Exception):
        log.exception("editor request %s %s failed", request.method, request.path)
        return jsonify(error=f"internal error ({type(e).__name__}); see the editor's log"), 500

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/model")
    def model():
        return jsonify(info)

    @app.get("/api/scene")
    def scene():
        seed = int_of(request.args.get("seed", "0"), "seed", SEED_RANGE)
        width = int_of(request.args.get("width", "512"), "width", (1, 1 << 16))
        height = int_of(request.args.get("height", "256"), "height", (1, 1 << 16))
        if (width, height) not in SCENE_SIZES:
            sizes = ", ".join(f"{w}x{h}" for w, h in SCENE_SIZES)
            raise InputError(f"scene size {width}x{height}: expected one of {sizes}")
        return jsonify(start_scene(seed, width, height, label_nc))

    @app.post("/api/decode")
    def decode():
        with work_slot():
            labels, instances, names = _uploads(label_nc)
        if instances is None:  # Cityscapes convention: a stuff pixel's instance is its class
            instances = labels.astype(np.int32)
        return jsonify({**maps_json(labels, instances), "opened": names})

    @app.post("/api/render")
    def render():
        style = style_from_json(request.form.get("style"))
        with work_slot():
            labels, instances, _ = _uploads(label_nc)
            image = np.asarray(renderer.render(labels, instances, style))
        image = image.reshape(labels.shape + (3,))
        # Uncompressed: on this local link encoding time, not bytes, is the editor's latency.
        return Response(encode_png(image, compress_level=0), mimetype="image/png")

    return app
