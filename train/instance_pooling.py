"""Instance-wise average pooling in torch: every pixel gets the mean feature of its instance.

Vectorised (ids compacted with `torch.unique`, sums with `index_add_`) so it costs the same for
ten instances or ten thousand; the engine's native kernel computes the same thing at serve time.
"""

from __future__ import annotations

import torch


def instance_average(features: torch.Tensor, instance_ids: torch.Tensor) -> torch.Tensor:
    """Mean of `features` [B,C,H,W] over each instance of `instance_ids` [B,1,H,W] (any integer
    or float dtype holding integer ids), per batch item; returns [B,C,H,W]. Differentiable."""
    b, c, h, w = features.shape
    if instance_ids.shape != (b, 1, h, w):
        raise ValueError(f"instance_ids must be [{b},1,{h},{w}], got {list(instance_ids.shape)}")
    ids = instance_ids.reshape(b, h * w).long()
    _, compact = torch.unique(ids, return_inverse=True)  # [B, HW] in 0..K-1, shared across batch
    k = int(compact.max()) + 1
    slot = (compact + torch.arange(b, device=ids.device).unsqueeze(1) * k).reshape(-1)  # [B*HW]
    # Sums and counts in fp32 whatever the features' dtype: under bf16 autocast a bf16 count
    # stops at 256 (256 + 1 rounds to 256) and a bf16 sum drifts, so every region larger than
    # 256 pixels got a wrong mean feature.
    flat = features.permute(0, 2, 3, 1).reshape(b * h * w, c).float()
    sums = flat.new_zeros(b * k, c).index_add_(0, slot, flat)
    counts = flat.new_zeros(b * k).index_add_(0, slot, flat.new_ones(b * h * w))
    means = (sums / counts.clamp_min(1).unsqueeze(1)).to(features.dtype)
    return means[slot].reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
