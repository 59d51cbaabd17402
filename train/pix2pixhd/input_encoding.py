"""The original pix2pixHD input path in torch: label one-hot ⊕ instance edges ⊕ instance features.

This is the reference the engine's kernels are checked against and the baseline they are
benchmarked against. All tensors are batched [B,1,H,W]. Instance ids are compared as integers:
the original's fp16 path rounds ids above 2048 and so loses the edge between e.g. car 26001 and
car 26002; here they stay exact.
"""

from __future__ import annotations

import numpy as np
import torch

from p2phd.common.errors import InputError
from p2phd.train.pix2pixhd.config import ModelConfig


def _check_map(name: str, t: torch.Tensor) -> None:
    if t.dim() != 4 or t.shape[1] != 1:
        raise InputError(f"{name} must be a [B,1,H,W] tensor, got shape {list(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise InputError(f"{name} must hold integer ids, got dtype {t.dtype}")


def one_hot(label: torch.Tensor, label_nc: int) -> torch.Tensor:
    """[B,1,H,W] class ids -> [B,label_nc,H,W] float32 one-hot; ids outside 0..label_nc-1 raise."""
    _check_map("label map", label)
    lo, hi = int(label.min()), int(label.max())
    if lo < 0 or hi >= label_nc:
        bad = hi if hi >= label_nc else lo
        raise InputError(f"label map holds class id {bad}; expected 0..{label_nc - 1} (label_nc)")
    b, _, h, w = label.shape
    out = torch.zeros(b, label_nc, h, w, dtype=torch.float32, device=label.device)
    return out.scatter_(1, label.long(), 1.0)


def edges(instance: torch.Tensor) -> torch.Tensor:
    """[B,1,H,W] instance ids -> [B,1,H,W] float32, 1 where a 4-neighbour has another id."""
    _check_map("instance map", instance)
    t = instance.long()
    edge = torch.zeros_like(t, dtype=torch.bool)
    dx = t[..., :, 1:] != t[..., :, :-1]
    dy = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge.float()


def class_of_instance(instance_id: int) -> int:
    """The semantic class of a Cityscapes-style instance id (class*1000+k, or the class itself)."""
    return instance_id if instance_id < 1000 else instance_id // 1000


def sample_features(
    instance: torch.Tensor,
    clusters: dict[int, np.ndarray],
    feat_num: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """[B,1,H,W] instance ids -> [B,feat_num,H,W]: each instance gets one randomly chosen cluster
    centre of its class (zeros for classes without clusters), as the original's sample_features."""
    _check_map("instance map", instance)
    b, _, h, w = instance.shape
    ids, compact = torch.unique(instance.long(), return_inverse=True)
    table = torch.zeros(len(ids), feat_num, dtype=torch.float32)
    for row, inst_id in enumerate(ids.tolist()):
        centres = clusters.get(class_of_instance(inst_id))
        if centres is None or len(centres) == 0:
            continue
        if centres.shape[1] != feat_num:
            raise InputError(
                f"feature clusters of class {class_of_instance(inst_id)} have "
                f"{centres.shape[1]} channels, expected feat_num {feat_num}"
            )
        pick = int(torch.randint(len(centres), (1,), generator=generator))
        table[row] = torch.from_numpy(np.asarray(centres[pick], dtype=np.float32))
    table = table.to(instance.device)
    return table[compact.reshape(b, h, w)].permute(0, 3, 1, 2).contiguous()


def encode_input(
    cfg: ModelConfig,
    label: torch.Tensor,
    instance: torch.Tensor | None = None,
    features: torch.Tensor | None = None,
) -> torch.Tensor:
    """The generator's input: one-hot ⊕ edges (when cfg.instance) ⊕ features (when feat_num)."""
    parts = [one_hot(label, cfg.label_nc)]
    if cfg.instance:
        if instance is None:
            raise InputError("this model uses instance maps, but none was given")
        if instance.shape != label.shape:
            raise InputError(
                f"instance map shape {list(instance.shape)} differs from the label map's "
                f"{list(label.shape)}"
            )
        parts.append(edges(instance).to(label.device))
    if cfg.feat_num:
        expected = (label.shape[0], cfg.feat_num, *label.shape[2:])
        if features is None or tuple(features.shape) != expected:
            got = None if features is None else list(features.shape)
            raise InputError(f"this model needs a feature map of shape {list(expected)}, got {got}")
        parts.append(features.float().to(label.device))
    return torch.cat(parts, dim=1)
