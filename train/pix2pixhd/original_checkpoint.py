"""Load checkpoints of NVIDIA's original pix2pixHD code: `*_net_G.pth`, `*_net_E.pth` and the
pickled `features_clustered_*.npy`.

Our networks share the original's parameter names, so loading is a strict state_dict load
(`train/state_dict.py`, which also forgives what old files carry); what this module adds is the
original's file kinds and error messages that say which pix2pixHD option disagrees with a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from p2phd.common.errors import CheckpointError
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator
from p2phd.train.state_dict import check_state, load_strict, read_state_dict


@dataclass
class Pix2PixHDCheckpoint:
    """Weights of an original pix2pixHD model, with the architecture they were checked against
    (the same attributes as our own checkpoints, plus the feature clusters)."""

    model_config: ModelConfig
    generator_state: dict[str, torch.Tensor]
    encoder_state: dict[str, torch.Tensor] | None = None
    features: dict[int, np.ndarray] | None = None


SHAPES_HINT = "check --ngf, --label-nc and --feat-num"


def keys_hint(state: dict[str, torch.Tensor]) -> str:
    return (
        f"{describe_layout(state)}: check --netG, --n-downsample-global, --n-blocks-global and "
        "--n-blocks-local"
    )


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Strictly load `state` into a pix2pixHD network, naming the option to check if it differs."""
    load_strict(module, state, source, keys_hint(state), SHAPES_HINT)


def describe_layout(state: dict[str, torch.Tensor]) -> str:
    """What the file holds, in option terms: residual blocks in the global part and in the
    (first) local enhancer."""

    def blocks(prefix: str) -> int:
        return len({k.split(".")[1] for k in state if k.startswith(prefix) and ".conv_block." in k})

    text = f"the file holds {blocks('model.')} global residual blocks"
    if any(k.startswith("model1_") for k in state):
        text += f" and {blocks('model1_2.')} local ones"
    return text


def check_input_channels(state: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> None:
    """Compare the generator's first convolution with label_nc + instance + feat_num."""
    weight = state.get("model.1.weight")
    if weight is None or weight.dim() != 4:
        raise CheckpointError(f"{source}: no model.1.weight; is this a pix2pixHD net_G file?")
    found, want = int(weight.shape[1]), cfg.input_nc
    if found == want:
        return
    sums = (
        f"label_nc {cfg.label_nc} + instance {int(cfg.instance)} + feat_num {cfg.feat_num} = {want}"
    )
    diff = found - want
    if diff > 0 and not cfg.instance and diff == 1:
        hint = "was it trained with instance maps (drop --no-instance)?"
    elif diff > 0 and cfg.feat_num == 0:
        hint = f"did you forget --feat-num {diff}?"
    elif diff < 0 and cfg.instance and diff == -1 and cfg.feat_num == 0:
        hint = "was it trained without instance maps (--no-instance)?"
    elif diff < 0 and cfg.feat_num >= -diff:
        hint = f"does it use {cfg.feat_num + diff} feature channels (--feat-num)?"
    else:
        hint = "check --label-nc"
    raise CheckpointError(f"{source}: checkpoint expects {found} input channels; {sums}: {hint}")


def load_feature_clusters(path: str | Path, feat_num: int | None) -> dict[int, np.ndarray]:
    """The original's features_clustered_*.npy: a PICKLED dict {class id: centres [k, feat_num]}
    (any width when feat_num is None). Only ever called on a file the user named explicitly,
    because it is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = np.load(path, allow_pickle=True, encoding="latin1")
        clusters = obj.item() if isinstance(obj, np.ndarray) and obj.dtype == object else obj
    except (OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path}: not a feature-cluster .npy file ({e})") from e
    if not isinstance(clusters, dict):
        raise CheckpointError(f"{path}: expected a dict {{class id: centres}}, got {type(obj)}")
    out = {}
    for cls, centres in clusters.items():
        arr = np.asarray(centres, dtype=np.float32)
        if arr.ndim != 2 or (feat_num is not None and arr.shape[1] != feat_num):
            raise CheckpointError(
                f"{path}: class {cls} has centres of shape {list(arr.shape)}; "
                f"expected [k, {feat_num}] (feat_num)"
            )
        if len(arr):
            out[int(cls)] = arr
    return out


def infer_feat_num(encoder_path: str | Path | None, features_path: str | Path | None) -> int:
    """feat_num implied by an encoder file (its last convolution's outputs), else by the
    user-named cluster file (its centres' width), else 0."""
    if encoder_path is None:
        if features_path is None:
            return 0
        widths = {c.shape[1] for c in load_feature_clusters(features_path, None).values()}
        if len(widths) != 1:
            raise CheckpointError(f"{features_path}: centres of differing widths {sorted(widths)}")
        return widths.pop()
    state = read_state_dict(encoder_path)
    last = [k for k, v in state.items() if k.endswith(".weight") and v.dim() == 4]
    if not last:
        raise CheckpointError(f"{encoder_path}: no convolution weights; is this a net_E file?")
    return int(state[last[-1]].shape[0])


def load_pix2pixhd(
    cfg: ModelConfig,
    generator_path: str | Path,
    encoder_path: str | Path | None = None,
    features_path: str | Path | None = None,
) -> Pix2PixHDCheckpoint:
    """Read and verify original pix2pixHD files against `cfg` (strict: every key and shape)."""
    if (encoder_path or features_path) and cfg.feat_num < 1:
        raise CheckpointError("an encoder or feature clusters need --feat-num >= 1")
    g_state = read_state_dict(generator_path)
    if cfg.netG == "global" and any(k.startswith("model1_") for k in g_state):
        raise CheckpointError(
            f"{generator_path}: holds a local enhancer (model1_*): use --netG local"
        )
    if cfg.netG == "local" and not any(k.startswith("model1_") for k in g_state):
        raise CheckpointError(f"{generator_path}: has no local enhancer layers: use --netG global")
    check_input_channels(g_state, cfg, str(generator_path))
    with torch.device("meta"):  # shapes only, no memory
        generator = build_generator(cfg)
    check_state(generator, g_state, generator_path, keys_hint(g_state), SHAPES_HINT)
    e_state = None
    if encoder_path:
        e_state = read_state_dict(encoder_path)
        with torch.device("meta"):
            encoder = build_encoder(cfg)
        check_state(encoder, e_state, encoder_path, keys_hint(e_state), SHAPES_HINT)
    features = load_feature_clusters(features_path, cfg.feat_num) if features_path else None
    for cls in features or {}:
        if not 0 <= cls < cfg.label_nc:
            raise CheckpointError(f"{features_path}: class {cls} is not in 0..{cfg.label_nc - 1}")
    return Pix2PixHDCheckpoint(cfg, g_state, e_state, features)
