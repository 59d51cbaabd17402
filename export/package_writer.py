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
from p2phd.train.input_encoding import encode_input
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pixhd.config import ModelConfig

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
        self.model = encoder.model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)


def exporter_version() -> str:
    try:
        ours = version("p2phd")
    except PackageNotFoundError:
        ours = "unknown"
    return f"p2phd {ours} (torch {torch.__version__}, onnx opset {OPSET})"


def random_generator_input(cfg: ModelConfig, batch: int, h: int, w: int, seed: int = 0):
    """A valid generator input: one-hot of random labels ⊕ edges of random instances ⊕
    features in [-1, 1]."""
    g = torch.Generator().manual_seed(seed + 1000 * h + w)
    label = torch.randint(cfg.label_nc, (batch, 1, h, w), generator=g)
    # Blocky instances (4x4 cells) so edges are sparse, as in real maps.
    cells = torch.randint(5, (batch, 1, (h + 3) // 4, (w + 3) // 4), generator=g)
    instance = cells.repeat_interleave(4, 2).repeat_interleave(4, 3)[..., :h, :w]
    feats = torch.rand(batch, cfg.feat_num, h, w, generator=g) * 2 - 1 if cfg.feat_num else None
    return encode_input(cfg, label, instance, feats)


def random_image(batch: int, h: int, w: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1000 * h + w)
    return torch.rand(batch, channels, h, w, generator=g) * 2 - 1


def parity_sizes(multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two small sizes whose bottleneck is 4x4 and 4x6. Not smaller: InstanceNorm over a 2x2
    bottleneck divides by the spread of four nearly equal values and amplifies rounding (the
    512p generator measures 1.4e-4 fp32 relative error at 32x32 but 6e-6 at 64x64 and above)."""
    return (4 * multiple, 4 * multiple), (4 * multiple, 6 * multiple)


def generator_inputs(
    config: ModelConfig | Pix2PixConfig, multiple: int
) -> tuple[InputMaker, tuple[tuple[int, int], ...]]:
    """Random valid generator inputs for `config` and the sizes parity is checked at. A U-Net
    is checked at its smallest sizes (1x1 and 1x2 bottlenecks; 4x larger would cost 16x), a
    pix2pix ResNet generator at 64x64 and 64x96."""
    if isinstance(config, Pix2PixConfig):
        maker = lambda b, h, w: random_image(b, h, w, channels=config.input_nc)  # noqa: E731
        if config.is_unet:
            return maker, ((multiple, multiple), (multiple, 2 * multiple))
        return maker, ((64, 64), (64, 96))
    maker = lambda b, h, w: random_generator_input(config, b, h, w)  # noqa: E731
    return maker, parity_sizes(multiple)


def _input_fields(config: ModelConfig | Pix2PixConfig) -> dict:
    """The manifest's description of the generator input."""
    if isinstance(config, Pix2PixConfig):
        return {"label_nc": 0, "instance": False, "feat_num": 0, "input_kind": "image",
                "input_nc": config.input_nc}  # fmt: skip
    return {"label_nc": config.label_nc, "instance": config.instance, "feat_num": config.feat_num}


def export_package(
    out_dir: str | Path,
    generator: nn.Module,
    config: ModelConfig | Pix2PixConfig,
    encoder: nn.Module | None = None,
    features: dict[int, np.ndarray] | None = None,
    classes: Sequence[SemanticClass | dict] | None = None,
    *,
    fp16: bool = True,
) -> Path:
    """Export `generator` (and `encoder`, `features`) described by `config` (pix2pixHD, or a
    pix2pix image-to-image generator) into the model package `out_dir`; parity-check every
    graph; return `out_dir`. Raises ExportError."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory")
    _check_inputs(generator, config, encoder, features)
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
            **_input_fields(config),
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


def _check_inputs(
    generator: nn.Module,
    config: ModelConfig | Pix2PixConfig,
    encoder: nn.Module | None,
    features: dict[int, np.ndarray] | None,
) -> None:
    first = next(iter(generator.state_dict().values()))
    if isinstance(config, Pix2PixConfig):
        if first.shape[1] != config.input_nc:
            raise ExportError(
                f"the generator takes {first.shape[1]} input channels but the config says "
                f"input_nc {config.input_nc}"
            )
        if encoder is not None or features:
            raise ExportError("a pix2pix generator takes no encoder or feature clusters")
        return
    if first.dim() == 4 and first.shape[1] != config.input_nc:
        raise ExportError(
            f"the generator takes {first.shape[1]} input channels but the config says "
            f"{config.input_nc} (label_nc {config.label_nc} + instance {int(config.instance)} "
            f"+ feat_num {config.feat_num})"
        )
    if (encoder is not None or features) and config.feat_num < 1:
        raise ExportError("an encoder or feature clusters need feat_num >= 1 in the config")
    for cls, centres in (features or {}).items():
        shape = np.shape(centres)
        if not 0 <= int(cls) < config.label_nc:
            raise ExportError(f"feature clusters for class {cls}: not in 0..{config.label_nc - 1}")
        if len(shape) != 2 or shape[1] != config.feat_num:
            raise ExportError(
                f"feature clusters for class {cls} have shape {list(shape)}; "
                f"expected [k, {config.feat_num}] (feat_num)"
            )


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
