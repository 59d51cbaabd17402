"""What `p2phd build` does: build and cache one engine of a package, then measure its quality.

The engine renders fixed synthetic maps (seeded blobs, style seed 0; for an image-input model,
images painted from such blobs) and so does the fp32 PyTorch reference (ONNX Runtime fp32 where
PyTorch is not installed, which export checked against it); the comparison is merged into
MODEL_DIR/engines/quality.json under "<backend>:<precision>".

The engine itself goes to the engine cache of the machine that builds it (`compiled_cache`), not
into the package: engines are specific to a runtime version and a CPU or GPU, while the quality
report travels with the package and is the only file `build` writes into it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from p2phd.common.errors import ConfigError
from p2phd.common.image_input import to_model_input
from p2phd.engine.backends import backend_class
from p2phd.engine.backends.base import EngineOptions
from p2phd.engine.core import quality
from p2phd.engine.core.renderer import Renderer
from p2phd.engine.core.style import Style

log = logging.getLogger(__name__)

QUALITY_SIZE = (256, 512)
QUALITY_BATCH = 2


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


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (h, w)."""
    match = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise ConfigError(f"--size {text!r}: expected HxW, e.g. 512x1024")
    return int(match[1]), int(match[2])


def _reference(renderer: Renderer):
    """The fp32 reference backend for the quality report: torch, else ONNX Runtime."""
    for name in ("torch", "onnxruntime"):
        cls = backend_class(name)
        if cls.availability() is None:
            return cls(renderer.package, "fp32")
    raise ConfigError("no fp32 reference backend (torch or onnxruntime) is installed")


def build_engine(
    model_dir: str | os.PathLike, backend: str, precision: str, options: EngineOptions
) -> BuildResult:
    """Build `backend` at `precision` for `options`, and record its quality against fp32."""
    renderer = Renderer(model_dir, backend, precision, "reject", options=options)
    m = renderer.manifest
    for sh, sw in options.sizes:
        if sh % m.size_multiple or sw % m.size_multiple:
            raise ConfigError(
                f"--size {sh}x{sw}: height and width must be multiples of {m.size_multiple} "
                "for this model"
            )
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
    reference = _reference(renderer)
    entry = quality.measure(reference.infer(x), renderer.backend.infer(x))
    entry |= {
        "reference": f"{reference.name}:fp32",
        "inputs": inputs,
        "device": renderer.backend.device(),
        "engine_files": [p.name for p in files],  # in the engine cache of the building machine
        "package": renderer.package.content_key,  # what was measured: this export only
    }
    key = f"{renderer.backend.name}:{renderer.backend.precision}"
    report = quality.write_entry(renderer.package.engines_dir, key, entry)
    renderer.close()
    log.info("%s: PSNR %s dB, max abs err %.2e", key, entry["psnr_db"], entry["max_abs_err"])
    return BuildResult(key, files, entry, report)
