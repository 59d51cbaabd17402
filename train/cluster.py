"""Instance-feature clustering: the encoder over a dataset, then k-means per class.

As the original pix2pixHD's encode_features: one pooled feature per instance, instances smaller
than a fraction of the image skipped, k = min(k, instances) centres per class. The centres are
what the engine samples styles from (features.npz, arrays "class_<id>", no pickle).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch

from p2phd.common.atomic import atomic_write_bytes
from p2phd.common.errors import CheckpointError, ConfigError
from p2phd.train.checkpoint import load_checkpoint
from p2phd.train.pix2pixhd.data import PairedDataset
from p2phd.train.pix2pixhd.input_encoding import class_of_instance
from p2phd.train.pix2pixhd.networks import build_encoder

log = logging.getLogger(__name__)

# The original keeps an instance when pixels / (h*w // 32) > 0.5: more than 1/64 of the image.
ORIGINAL_MIN_AREA = 1 / 64


@torch.no_grad()
def encode_instance_features(
    checkpoint: str | Path,
    data: str | Path,
    *,
    phase: str = "train",
    size: tuple[int, int] | None = None,
    min_area: float = ORIGINAL_MIN_AREA,
) -> dict[int, np.ndarray]:
    """Per class id: [n, feat_num] float32 pooled encoder features, one row per instance
    covering more than `min_area` of its image. `size` defaults to the training size."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.model_config
    if ckpt.encoder_state is None or cfg.feat_num < 1:  # a pix2pix model has neither
        raise CheckpointError(f"{checkpoint}: the model has no feature encoder (feat_num 0)")
    encoder = build_encoder(cfg)
    encoder.load_state_dict(ckpt.encoder_state)
    encoder.eval()
    if size is None and ckpt.train_config and ckpt.train_config.get("size"):
        size = tuple(ckpt.train_config["size"])
    dataset = PairedDataset(data, cfg.size_multiple, size, phase=phase, label_nc=cfg.label_nc)
    rows: dict[int, list[np.ndarray]] = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        feats = encoder.features(sample["image"][None])[0]  # [C, H, W]
        ids = sample["instance"][0]
        unique, compact = torch.unique(ids, return_inverse=True)
        counts = torch.bincount(compact.flatten(), minlength=len(unique)).float()
        sums = torch.zeros(len(unique), cfg.feat_num).index_add_(
            0, compact.flatten(), feats.flatten(1).T
        )
        means = sums / counts[:, None]
        keep = counts / ids.numel() > min_area
        for inst_id, mean in zip(unique[keep].tolist(), means[keep], strict=True):
            rows.setdefault(class_of_instance(inst_id), []).append(mean.numpy())
    return {c: np.stack(r).astype(np.float32) for c, r in sorted(rows.items())}


def cluster_features(
    features: dict[int, np.ndarray], k: int, seed: int = 0
) -> dict[int, np.ndarray]:
    """k-means centres per class, k = min(k, number of instances of the class)."""
    from sklearn.cluster import KMeans

    if k < 1:
        raise ConfigError(f"-k must be >= 1, got {k}")
    centres = {}
    for cls, feats in features.items():
        n = min(k, len(feats))
        km = KMeans(n_clusters=n, random_state=seed, n_init=10).fit(feats)
        centres[cls] = km.cluster_centers_.astype(np.float32)
    return centres


def write_features(path: str | Path, centres: dict[int, np.ndarray]) -> None:
    """features.npz with one float32 [k, feat_num] array "class_<id>" per class, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{f"class_{c}": v.astype(np.float32) for c, v in sorted(centres.items())})
    atomic_write_bytes(path, buf.getvalue())


def cluster(
    checkpoint: str | Path,
    data: str | Path,
    k: int = 10,
    out: str | Path = "features.npz",
    *,
    phase: str = "train",
    min_area: float = ORIGINAL_MIN_AREA,
) -> dict[int, np.ndarray]:
    """Encode, cluster and write `out`; returns the centres per class."""
    features = encode_instance_features(checkpoint, data, phase=phase, min_area=min_area)
    if not features:
        raise ConfigError(f"{data}: no instance covers more than {min_area:g} of its image")
    centres = cluster_features(features, k)
    write_features(out, centres)
    log.info("wrote %s: %d classes", out, len(centres))
    return centres
