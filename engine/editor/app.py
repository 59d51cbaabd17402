"""The editor's HTTP side: the page, model info, a starting scene, upload decoding and renders.

Maps travel as PNG (label: 8-bit class ids, instance: 16-bit ids) both ways, decoded and
validated here with the engine's own checks, so a bad upload comes back as JSON
``{"error": reason}`` (status 400) and the page keeps its last good state. Decoded maps go to
the page as base64 raw arrays (uint8 labels, little-endian int32 instances), because a browser
canvas cannot read 16-bit PNGs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request, send_from_directory

from p2phd.engine.decode import decode_pair, validate_maps
from p2phd.engine.errors import InputError, P2PHDError
from p2phd.engine.package import ModelPackage
from p2phd.engine.serving import Engine, encode_png
from p2phd.engine.style import Style

STATIC = Path(__file__).parent / "static"
EDITOR_MAX_PIXELS = 2048 * 1024  # a Cityscapes frame; larger maps stop being interactive
MAX_UPLOAD_BYTES = 32 << 20
SCENE_SIZES = ((256, 128), (512, 256), (1024, 512))
# HTTP status per error family; anything else a P2PHDError names is the engine's fault.
_STATUS = {"INVALID_ARGUMENT": 400, "RESOURCE_EXHAUSTED": 503, "UNAVAILABLE": 503}


def model_info(package: ModelPackage, engine: Engine) -> dict[str, Any]:
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
        "renderer": engine.describe(),
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


def style_from_json(text: str | None) -> Style:
    """The page's style: ``{"seed": int, "instances": {"<id>": cluster}}``."""
    if not text:
        return Style()
    try:
        d = json.loads(text)
        seed = int(d.get("seed", 0))
        by_instance = {int(k): int(v) for k, v in d.get("instances", {}).items()}
    except (ValueError, TypeError, AttributeError) as e:
        expected = "{'seed': int, 'instances': {id: cluster}}"
        raise InputError(f"style: expected {expected} ({e})") from None
    if not 0 <= seed < 2**63:
        raise InputError(f"style: seed {seed} is outside 0..2**63-1")
    return Style(seed=seed, by_instance=by_instance)


def _uploads(label_nc: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode and validate the request's `label` and optional `instance` PNG uploads."""
    label = request.files.get("label")
    if label is None:
        raise InputError("no label map uploaded (form field 'label')")
    instance = request.files.get("instance")
    return decode_pair(
        label.read(),
        instance.read() if instance else None,
        label_nc,
        max_pixels=EDITOR_MAX_PIXELS,
        label_name=label.filename or "label map",
        instance_name=(instance.filename or "instance map") if instance else None,
    )


def create_app(engine: Engine, package: ModelPackage) -> Flask:
    """The editor's Flask app for `engine` (a Renderer or RemoteRenderer) and its package."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    info = model_info(package, engine)
    label_nc = info["label_nc"]

    @app.errorhandler(P2PHDError)
    def p2phd_error(e: P2PHDError):
        return jsonify(error=str(e)), _STATUS.get(e.grpc_status, 500)

    @app.errorhandler(413)
    def too_large(_e):
        return jsonify(error=f"upload larger than {MAX_UPLOAD_BYTES >> 20} MiB"), 413

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/api/model")
    def model():
        return jsonify(info)

    @app.get("/api/scene")
    def scene():
        seed = request.args.get("seed", 0, type=int)
        width = request.args.get("width", 512, type=int)
        height = request.args.get("height", 256, type=int)
        if (width, height) not in SCENE_SIZES:
            sizes = ", ".join(f"{w}x{h}" for w, h in SCENE_SIZES)
            raise InputError(f"scene size {width}x{height}: expected one of {sizes}")
        return jsonify(start_scene(seed, width, height, label_nc))

    @app.post("/api/decode")
    def decode():
        labels, instances = _uploads(label_nc)
        if instances is None:  # Cityscapes convention: a stuff pixel's instance id is its class
            instances = labels.astype(np.int32)
        return jsonify(maps_json(labels, instances))

    @app.post("/api/render")
    def render():
        labels, instances = _uploads(label_nc)
        style = style_from_json(request.form.get("style"))
        image = np.asarray(engine.render(labels, instances, style))
        image = image.reshape(labels.shape + (3,))
        # Uncompressed: on this local link encoding time, not bytes, is the editor's latency.
        return Response(encode_png(image, compress_level=0), mimetype="image/png")

    return app
