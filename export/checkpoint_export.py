"""Export from checkpoints: ours (`p2phd train`), the original pix2pixHD's files, or a pix2pix /
CycleGAN generator file.

Every kind reaches here as an object with `.model_config` and `.generator_state` (and what its
family reads beside them: pix2pixHD's `.encoder_state`, the original's `.features`); the model
family rebuilds the networks from the config and loads them strictly, and they are written as a
model package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from p2phd.common.errors import CheckpointError
from p2phd.export.package_writer import export_package
from p2phd.train import families


class CheckpointLike(Protocol):
    model_config: Any  # a config of one of the model families
    generator_state: dict[str, torch.Tensor]


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
    classes=None,
) -> Path:
    """Rebuild the networks of `ckpt`, load its weights strictly and export the package (with
    `classes`, a class table; None: the default one)."""
    cfg = ckpt.model_config
    generator, encoder = families.of(cfg).load_networks(ckpt, source)
    if features is None:
        features = getattr(ckpt, "features", None)
    return export_package(
        out_dir, generator, cfg, encoder=encoder, features=features, fp16=fp16, classes=classes
    )
