"""Export from checkpoints: ours (`p2phd train`), the original pix2pixHD's files, or a pix2pix /
CycleGAN generator file.

Both kinds reach here as an object with `.model_config`, `.generator_state` and
`.encoder_state`; the networks are rebuilt from the config, loaded strictly, and written as a
model package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from p2phd.common.errors import CheckpointError
from p2phd.export.package_writer import export_package
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.networks import build_pix2pix_generator
from p2phd.train.pix2pix.original_checkpoint import Pix2PixCheckpoint
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator
from p2phd.train.pix2pixhd.original_checkpoint import load_into


class CheckpointLike(Protocol):
    model_config: ModelConfig | Pix2PixConfig
    generator_state: dict[str, torch.Tensor]
    encoder_state: dict[str, torch.Tensor] | None


def read_features_npz(path: str | Path) -> dict[int, np.ndarray]:
    """Our features.npz (arrays "class_<id>" of [k, feat_num]), read without unpickling."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {int(k.removeprefix("class_")): z[k].astype(np.float32) for k in z.files}
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: not a features.npz with arrays named class_<id> ({e}); an original "
            "pix2pixHD features_clustered_*.npy goes with --pix2pixhd-g"
        ) from e


def export_checkpoint(
    ckpt: CheckpointLike,
    out_dir: str | Path,
    features: dict[int, np.ndarray] | None = None,
    source: str = "checkpoint",
    fp16: bool = True,
) -> Path:
    """Rebuild the networks of `ckpt`, load its weights strictly and export the package."""
    cfg = ckpt.model_config
    if isinstance(cfg, Pix2PixConfig):  # trained by p2phd train with a pix2pix config
        return export_pix2pix(Pix2PixCheckpoint(cfg, ckpt.generator_state), out_dir, source, fp16)
    generator = build_generator(cfg)
    load_into(generator, ckpt.generator_state, f"{source} (generator)")
    encoder = None
    if ckpt.encoder_state is not None:
        encoder = build_encoder(cfg)
        load_into(encoder, ckpt.encoder_state, f"{source} (encoder)")
    if features is None:
        features = getattr(ckpt, "features", None)
    return export_package(out_dir, generator, cfg, encoder=encoder, features=features, fp16=fp16)


def export_pix2pix(
    ckpt: Pix2PixCheckpoint, out_dir: str | Path, source: str = "checkpoint", fp16: bool = True
) -> Path:
    """Build the pix2pix generator in the config's BatchNorm mode, load `ckpt` strictly and
    export an image-input package."""
    generator = build_pix2pix_generator(ckpt.model_config)
    load_into(generator, ckpt.generator_state, f"{source} (generator)")
    return export_package(out_dir, generator, ckpt.model_config, fp16=fp16)
