"""Renderers of one package that differ in one setting, compared on the same maps (used by
first_conv.py and rewrites.py).

Each variant's Renderer is made and warmed by one render while its setting is in force (an
environment variable read at load, or a graph rewrite applied when the first render compiles
the model), each with its own engine cache; then the warm Renderers render the same maps at
batch 4 in alternating rounds, so a slow spell on a shared machine hits all of them. The result:
median ms/image per variant and its ratio to the first's, how far each one's 8-bit images are
from the first's, and each one's PSNR against ONNX Runtime fp32 (mean and worst image).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from _shared import machine, write_result
from int8 import decoded, real_maps

BATCH = 4
SIZE = (256, 512)

# A variant's setting: a context manager in force while its Renderer loads and first renders.
Setting = Callable[[], contextlib.AbstractContextManager]


def render_all(renderer, labels, instances) -> np.ndarray:
    return np.concatenate([
        renderer.render(labels[i : i + BATCH], instances[i : i + BATCH])
        for i in range(0, len(labels), BATCH)
    ])  # fmt: skip


def psnr(images: np.ndarray, reference: np.ndarray) -> dict:
    """Mean and worst per-image PSNR (dB) of uint8 images against the reference's."""
    from p2phd.engine.core.quality import psnr_db

    db = [psnr_db(ref, image) for ref, image in zip(reference, images, strict=True)]
    return {"mean": round(float(np.mean(db)), 2), "worst": round(min(db), 2)}


@contextlib.contextmanager
def environment(name: str, value: str):
    """$name set to `value` (a setting read when the backend loads)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def compare(model: Path, precision: str, variants: dict[str, Setting], labels, instances,
            rounds: int, cache: Path) -> dict:  # fmt: skip
    """The variants of `model` at `precision` on the maps (the first is the baseline); `cache`:
    a folder for their engine caches."""
    from p2phd.engine.backends.base import EngineOptions
    from p2phd.engine.core.compiled_cache import CACHE_ENV
    from p2phd.engine.core.renderer import Renderer

    with Renderer(model, "onnxruntime", "fp32") as fp32:
        reference = render_all(fp32, labels, instances)
    renderers, images = {}, {}
    for name, setting in variants.items():
        with setting(), environment(CACHE_ENV, str(cache / f"{precision}-{name}")):
            options = EngineOptions((1, BATCH, BATCH), sizes=[SIZE])
            renderers[name] = Renderer(model, "openvino", precision, options=options)
            images[name] = render_all(renderers[name], labels, instances)  # compiles, warms
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, r in renderers.items():
            start = time.perf_counter()
            render_all(r, labels, instances)
            times[name].append((time.perf_counter() - start) * 1e3 / len(labels))
    median = {name: float(np.median(t)) for name, t in times.items()}
    first, *others = variants
    diff = {n: np.abs(images[first].astype(int) - images[n].astype(int)) for n in others}
    return {
        "model": str(model),
        "precision": precision,
        "first_conv": {name: r.backend.describe()["first_conv"] for name, r in renderers.items()},
        "ms_per_image": {name: [round(t, 1) for t in ts] for name, ts in times.items()},
        "median_ms_per_image": {name: round(m, 1) for name, m in median.items()},
        "speedup": {n: round(median[first] / median[n], 3) for n in others},
        "output_difference_levels": {
            n: {"max": int(d.max()), "mean": round(float(d.mean()), 3)} for n, d in diff.items()
        },
        "psnr_vs_fp32_db": {name: psnr(images[name], reference) for name in variants},
    }


def measure(cases: Iterable[tuple[dict, Path, str, dict[str, Setting]]], rounds: int,
            output: Path) -> None:  # fmt: skip
    """Each case, (fields to record with it, model, precision, variants), compared on the
    sample's maps at 256x512; its row printed, and all written to `output` with the machine."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        labels, instances = decoded(real_maps(Path(tmp) / "maps"), label_nc=35)
        for i, (fields, model, precision, variants) in enumerate(cases):
            cache = Path(tmp) / f"case-{i}"
            rows.append({**fields, **compare(model, precision, variants, labels, instances,
                                             rounds, cache)})  # fmt: skip
            print(rows[-1], flush=True)
    write_result(output, {
        "machine": machine(),
        "maps": f"{len(labels)} Cityscapes sample maps at {SIZE[0]}x{SIZE[1]}, batch {BATCH}",
        "rows": rows,
    })  # fmt: skip
