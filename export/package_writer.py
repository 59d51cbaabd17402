"""Write a model package from torch networks: ONNX graphs checked for parity, the fp16 variant,
feature clusters and the manifest, installed into MODEL_DIR only once everything is verified.

The package is assembled in a staging directory beside MODEL_DIR and moved in at the end
(manifest last), so a failed or interrupted export never leaves a half-written package behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from p2phd.common.classes import SemanticClass
from p2phd.common.errors import ExportError
from p2phd.engine.core.package import (
    ENCODER,
    FEATURES,
    GENERATOR,
    MANIFEST,
    Manifest,
    write_manifest,
)
from p2phd.export.fp16 import to_fp16
from p2phd.export.onnx_export import OPSET, export_onnx, save_onnx
from p2phd.export.parity import InputMaker, check_parity, fp16_psnr_db, measure_error
from p2phd.train import families
from p2phd.train.family import random_image

log = logging.getLogger(__name__)

GENERATOR_FP16 = "generator.fp16.onnx"
# The fp16 variant is measured, not gated: above this its error is reported as a warning.
FP16_WARN = 1e-2
PACKAGE_FILES = (MANIFEST, GENERATOR, GENERATOR_FP16, ENCODER, FEATURES)


class EncoderFeatures(nn.Module):
    """The encoder without instance pooling (the engine's kernel pools); parameter names are
    the Encoder's own (`model.N.*`)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.model = encoder.model  # registered here: the names its initializers carry
        self.features = encoder.features  # runs that same model (and any tail skip)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.features(image)


def exporter_version() -> str:
    try:
        ours = version("p2phd")
    except PackageNotFoundError:
        ours = "unknown"
    return f"p2phd {ours} (torch {torch.__version__}, onnx opset {OPSET})"


def generator_inputs(config, multiple: int) -> tuple[InputMaker, tuple[tuple[int, int], ...]]:
    """Random valid generator inputs for `config` and the sizes parity is checked at (the first
    is traced), as its model family makes them."""
    family = families.of(config)
    return partial(family.example_input, config), family.parity_sizes(config, multiple)


def export_package(
    out_dir: str | Path,
    generator: nn.Module,
    config,
    encoder: nn.Module | None = None,
    features: dict[int, np.ndarray] | None = None,
    classes: Sequence[SemanticClass | dict] | None = None,
    *,
    fp16: bool = True,
) -> Path:
    """Export `generator` (and `encoder`, `features`) described by `config` (a config of one of
    the model families) into the model package `out_dir`; parity-check every graph; return
    `out_dir`. Raises ExportError."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory")
    family = families.of(config)
    family.check_export(config, generator, encoder, features)
    multiple = config.size_multiple
    if encoder is not None:
        multiple = max(multiple, 2**config.n_downsample_E)
    make_gen, sizes = generator_inputs(config, multiple)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.export-"))
    try:
        generator = generator.eval()
        gen_path = staging / GENERATOR
        export_onnx(generator, make_gen(1, *sizes[0]), gen_path, "input", "image")
        parity = {"generator": check_parity(generator, gen_path, make_gen, sizes)}
        variants = {}
        if fp16:
            save_onnx(to_fp16(onnx.load(str(gen_path))), staging / GENERATOR_FP16)
            parity["fp16"] = measure_error(generator, staging / GENERATOR_FP16, make_gen, sizes)
            parity["fp16_psnr_db"] = round(
                fp16_psnr_db(staging / GENERATOR_FP16, gen_path, make_gen, sizes[0]), 2
            )  # the variant in true fp16 (onnx.reference) against fp32
            variants["fp16"] = GENERATOR_FP16
            if parity["fp16"] > FP16_WARN:
                log.warning(
                    "fp16 variant: relative error %.3g vs fp32 torch (above %g)",
                    parity["fp16"],
                    FP16_WARN,
                )
        if encoder is not None:
            enc = EncoderFeatures(encoder).eval()
            export_onnx(enc, random_image(1, *sizes[0]), staging / ENCODER, "image", "features")
            parity["encoder"] = check_parity(enc, staging / ENCODER, random_image, sizes)
        if features:
            arrays = {f"class_{c}": np.asarray(v, np.float32) for c, v in sorted(features.items())}
            np.savez(staging / FEATURES, **arrays)  # the staging directory makes it atomic
        class_table = [
            c.to_json() if isinstance(c, SemanticClass) else dict(c) for c in classes or []
        ]
        manifest = Manifest(
            architecture=config.to_json(),
            size_multiple=multiple,
            **family.manifest_inputs(config),
            classes=class_table,  # empty: write_manifest fills in the default table
            variants=variants,
            parity=parity,
            exporter_version=exporter_version(),
        )
        write_manifest(staging, manifest)
        _install(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "exported %s (parity %s)", out_dir, ", ".join(f"{k} {v:.2g}" for k, v in parity.items())
    )
    return out_dir


def _install(staging: Path, out_dir: Path) -> None:
    """Move the staged package into `out_dir`: data files first, manifest last; package files
    of an older export that the new one lacks are removed. `engines/` is left alone (engines are
    keyed by the ONNX hash, so stale ones are never used)."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        staging.mkdir()  # so the caller's cleanup has something to remove
        return
    (out_dir / MANIFEST).unlink(missing_ok=True)
    new = {p.name for p in staging.iterdir()}
    for name in PACKAGE_FILES:
        if name not in new:
            (out_dir / name).unlink(missing_ok=True)
    for stale in out_dir.glob("*.onnx.data"):
        if stale.name not in new:
            stale.unlink()
    for name in sorted(new - {MANIFEST}):
        os.replace(staging / name, out_dir / name)
    os.replace(staging / MANIFEST, out_dir / MANIFEST)
