"""Reading and checking state_dicts, for every family's checkpoint loaders.

Our networks share the original code's parameter names, so loading a checkpoint is a strict
state_dict load; what this adds is tolerance for what old files carry (a DataParallel `module.`
prefix, running statistics that pre-0.4 PyTorch stored for affine-free InstanceNorm) and errors
that name the first disagreeing key with the family's hint at the option to check, instead of a
wall of key names.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import torch
from torch import nn

from p2phd.common.errors import CheckpointError

LEGACY_NORM_KEYS = ("running_mean", "running_var", "num_batches_tracked")


def read_state_dict(path: str | Path, keep: Collection[str] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a .pth state_dict (never unpickling anything else), without a `module.`
    prefix and without the legacy running statistics of affine-free InstanceNorm layers (running
    statistics whose key is in `keep`, e.g. a BatchNorm network's own, are kept)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises assorted types for corrupt or non-weights files
        raise CheckpointError(f"{path}: not a PyTorch weights file ({e})") from e
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: expected a state_dict of tensors")
    state = {}
    for key, value in raw.items():
        key = key.removeprefix("module.")
        if key.rsplit(".", 1)[-1] in LEGACY_NORM_KEYS and key not in keep:
            continue
        state[key] = value
    return state


def load_strict(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    source: str | Path,
    keys_hint: str,
    shapes_hint: str,
) -> None:
    """Strictly load `state` into `module`, or raise as `check_state` does."""
    check_state(module, state, source, keys_hint, shapes_hint)
    module.load_state_dict(state, strict=True)


def check_state(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    source: str | Path,
    keys_hint: str,
    shapes_hint: str,
) -> None:
    """Raise CheckpointError unless `state` has exactly `module`'s keys and shapes (works on a
    module built on the meta device, so nothing is allocated). The hints say what the file holds
    and which options to check when the keys, or the shapes, disagree."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected {_few(unexpected)}")
        raise CheckpointError(
            f"{source}: keys do not match the architecture ({'; '.join(parts)}); {keys_hint}"
        )
    for key, want in expected.items():
        found = state[key].shape
        if found != want.shape:
            raise CheckpointError(
                f"{source}: {key} has shape {list(found)}, the architecture expects "
                f"{list(want.shape)}; {shapes_hint}"
            )


def _few(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")
