"""What `p2phd build` does: build and cache one engine of a package, then measure its quality.

The engine renders fixed synthetic maps (seeded blobs, style seed 0; for an image-input model,
images painted from such blobs) and so does the fp32 PyTorch reference (ONNX Runtime fp32 where
PyTorch is not installed, which export checked against it); the comparison is merged into
MODEL_DIR/engines/quality.json under "<backend>:<precision>".

The engine itself goes to the engine cache of the machine that builds it (`compiled_cache`), not
into the package: engines are specific to a runtime version and a CPU or GPU, while the quality
report travels with the package and is the only file `build` writes into it (with
--calibration, also the int8 graph and its record in the manifest: export.int8).

int8 is measured differently: on the held-out maps of its calibration (real maps the quantizer
never saw, passed in by `p2phd build --calibration`), against a gate (`quality.int8_gate`) whose
verdict is recorded with the numbers; `--precision int8` runs only where it passed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from p2phd.common.errors import ConfigError
from p2phd.common.image_input import to_model_input
from p2phd.engine.backends import backend_class, choose_backend
from p2phd.engine.backends.base import Backend, EngineOptions
from p2phd.engine.core import quality
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style

log = logging.getLogger(__name__)

QUALITY_SIZE = (256, 512)
QUALITY_BATCH = 2


@dataclass
class HeldOut:
    """What the int8 gate is measured on: the generator's dense inputs [B, C, H, W] of maps the
    calibration never saw, and a description of them for the report."""

    dense: np.ndarray
    description: str


@dataclass
class BuildResult:
    key: str
    files: list[Path]
    quality: dict
    report: Path


def parse_batch(text: str) -> tuple[int, int, int]:
    """'MIN:OPT:MAX' (or a single N for N:N:N) -> (min, opt, max)."""
    parts = text.split(":")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ConfigError(f"--batch {text!r}: expected MIN:OPT:MAX, e.g. 1:2:8")
    lo, opt, hi = (int(p) for p in parts)
    return lo, opt, hi


def _reference(package: ModelPackage):
    """The fp32 reference backend for the quality report: torch, else ONNX Runtime."""
    for name in ("torch", "onnxruntime"):
        cls = backend_class(name)
        if cls.availability() is None:
            return cls(package, "fp32")
    raise ConfigError("no fp32 reference backend (torch or onnxruntime) is installed")


def check_sizes(options: EngineOptions, multiple: int) -> None:
    """ConfigError unless every size is a multiple of the model's `multiple`."""
    for sh, sw in options.sizes:
        if sh % multiple or sw % multiple:
            raise ConfigError(
                f"--size {sh}x{sw}: height and width must be multiples of {multiple} for this model"
            )


def _in_batches(backend: Backend, x: np.ndarray) -> np.ndarray:
    """backend.infer over x in batches of the engine's least batch size (the last one padded
    with repeats of the first input, then cut off), so any number of inputs fits its profile."""
    step = backend.options.batch[0]
    padded = np.concatenate([x, np.repeat(x[:1], -len(x) % step, axis=0)])
    out = [backend.infer(padded[i : i + step]) for i in range(0, len(padded), step)]
    return np.concatenate(out)[: len(x)]


def _record(
    backend: Backend, reference: Backend, files: list[Path], inputs: str, entry: dict
) -> BuildResult:
    """Add to `entry` what was measured, on what, against what, and merge it into quality.json."""
    entry |= {
        "reference": f"{reference.name}:fp32",
        "inputs": inputs,
        "device": backend.device(),
        "engine_files": [p.name for p in files],  # in the engine cache of the building machine
        "engine": backend.cache_key(),  # runtime version, device, graph rewrites: what measured
        "package": backend.package.content_key,  # what was measured: this export only
    }
    key = f"{backend.name}:{backend.precision}"
    report = quality.write_entry(backend.package.engines_dir, key, entry)
    log.info("%s: PSNR %s dB, max abs err %.2e", key, entry["psnr_db"], entry["max_abs_err"])
    return BuildResult(key, files, entry, report)


def build_engine(
    model_dir: str | os.PathLike,
    backend: str,
    precision: str,
    options: EngineOptions,
    held_out: HeldOut | None = None,
) -> BuildResult:
    """Build `backend` at `precision` for `options`, and record its quality against fp32; int8
    is measured on `held_out` and gated (`build_int8`)."""
    if precision == "int8":
        if held_out is None:
            raise ConfigError(
                "precision int8 is measured on held-out calibration maps: pass --calibration DIR"
            )
        return build_int8(model_dir, backend, options, held_out)
    with Renderer(model_dir, backend, precision, "reject", options=options) as renderer:
        return _build_and_measure(renderer, options)


def _build_and_measure(renderer: Renderer, options: EngineOptions) -> BuildResult:
    """Build `renderer`'s engine and measure it against the fp32 reference on synthetic input."""
    m = renderer.manifest
    check_sizes(options, m.size_multiple)
    files = renderer.backend.build()
    mult = m.size_multiple
    h, w = options.sizes[0] if options.sizes else QUALITY_SIZE
    h, w = max(mult, h // mult * mult), max(mult, w // mult * mult)
    lo, _, hi = options.batch
    batch = min(max(QUALITY_BATCH, lo), hi)
    if m.image_input:
        x = to_model_input(quality.synthetic_images(batch, h, w, m.input_nc))
        inputs = f"synthetic_images(seed=2018) {batch}x{h}x{w}"
    else:
        labels, instances = quality.synthetic_maps(batch, h, w, m.label_nc)
        x = renderer.dense_input(labels, instances if m.instance else None, [Style(seed=0)] * batch)
        inputs = f"synthetic_maps(seed=2018) {batch}x{h}x{w}, style seed 0"
    reference = _reference(renderer.package)
    try:
        entry = quality.measure(reference.infer(x), renderer.backend.infer(x))
        return _record(renderer.backend, reference, files, inputs, entry)
    finally:
        reference.close()


def build_int8(
    model_dir: str | os.PathLike, backend: str, options: EngineOptions, held_out: HeldOut
) -> BuildResult:
    """Build `backend` on the package's int8 graph and measure the int8 gate on `held_out`.

    The engine is opened directly, not through the renderer: the renderer refuses int8 until
    the gate this build measures has passed."""
    package = ModelPackage(model_dir)
    name, _ = choose_backend(backend)
    check_sizes(options, package.manifest.size_multiple)
    engine = backend_class(name)(package, "int8", options)
    try:
        files = engine.build()
        x = held_out.dense
        reference = _reference(package)
        try:
            ref, out = _in_batches(reference, x), _in_batches(engine, x)
            entry = quality.measure(ref, out) | quality.local_error(ref, out)
            passed, numbers = quality.int8_gate(entry)
            entry |= {"gate": "passed" if passed else "failed", "gate_numbers": numbers}
            return _record(engine, reference, files, held_out.description, entry)
        finally:
            reference.close()
    finally:
        engine.close()
