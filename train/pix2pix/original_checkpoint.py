"""Load generator checkpoints of junyanz's pytorch-CycleGAN-and-pix2pix (`latest_net_G.pth`,
CycleGAN's `latest_net_G_A.pth` / `latest_net_G_B.pth`).

Our pix2pix networks share the original's parameter names, so loading is a strict state_dict
load (`train/state_dict.py`: `module.` prefix, legacy InstanceNorm running statistics); what this
module adds is what BatchNorm files carry (running statistics, kept; a `num_batches_tracked` that
pre-0.4.1 files lack, filled in), the dropout layout of ResNet blocks (read from the file), and
messages that name the pix2pix option that disagrees with the file.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from p2phd.common.errors import CheckpointError
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.networks import build_generator
from p2phd.train.state_dict import check_state, load_strict, read_state_dict

UNET_FIRST = "model.model.0.weight"
RESNET_FIRST = "model.1.weight"


@dataclass
class Pix2PixCheckpoint:
    """Generator weights of an original pix2pix/CycleGAN model, checked against `model_config`."""

    model_config: Pix2PixConfig
    generator_state: dict[str, torch.Tensor]


def describe_layout(state: dict[str, torch.Tensor]) -> str:
    """What the file holds, in option terms (network, levels or blocks, norm, ngf)."""
    norm = "batch" if _has_norm_weights(state) else "instance"
    if UNET_FIRST in state:
        levels = 1 + max((k.count("model.") - 2 for k in state), default=0)
        w = state[UNET_FIRST]
        return (
            f"the file holds a U-Net with {levels} levels (unet_{2**levels}), norm {norm}, "
            f"ngf {w.shape[0]}, input_nc {w.shape[1]}"
        )
    if RESNET_FIRST in state:
        blocks = {k.split(".")[1] for k in state if ".conv_block." in k}
        w = state[RESNET_FIRST]
        return (
            f"the file holds a ResNet generator with {len(blocks)} blocks "
            f"(resnet_{len(blocks)}blocks), norm {norm}, ngf {w.shape[0]}, input_nc {w.shape[1]}"
        )
    return "the file holds neither a U-Net (model.model.0.*) nor a ResNet generator (model.1.*)"


def _has_norm_weights(state: dict[str, torch.Tensor]) -> bool:
    """BatchNorm layers have affine weights; the original's InstanceNorm layers have none: a
    1-D `.weight` is a norm's (convolution weights are 4-D)."""
    return any(k.endswith(".weight") and v.dim() == 1 for k, v in state.items())


def _resnet_dropout(state: dict[str, torch.Tensor]) -> bool:
    """Dropout in a ResNet block shifts its second convolution from conv_block.5 to .6."""
    return any(re.search(r"\.conv_block\.6\.weight$", k) and v.dim() == 4 for k, v in state.items())


def load_pix2pix(cfg: Pix2PixConfig, generator_path: str | Path) -> Pix2PixCheckpoint:
    """Read and verify an original pix2pix/CycleGAN generator file against `cfg` (strict: every
    key and shape). For a ResNet generator, `use_dropout` is taken from the file's layout."""
    source = str(generator_path)
    state = read_state_dict(generator_path, keep=_keys(cfg, False) | _keys(cfg, True))
    if not cfg.is_unet:
        cfg = dataclasses.replace(cfg, use_dropout=_resnet_dropout(state))
    # Files saved before PyTorch 0.4.1 have no BatchNorm counters.
    for key in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(key.replace(".running_mean", ".num_batches_tracked"), torch.tensor(0))
    layout = describe_layout(state)
    is_unet = UNET_FIRST in state
    if is_unet != cfg.is_unet or _has_norm_weights(state) != (cfg.norm == "batch"):
        raise CheckpointError(f"{source}: {layout}; you asked for {cfg.netG}, norm {cfg.norm}")
    first = state[UNET_FIRST if is_unet else RESNET_FIRST]
    if first.dim() == 4 and first.shape[1] != cfg.input_nc:
        raise CheckpointError(
            f"{source}: the generator takes {first.shape[1]} input channels; use "
            f"--input-nc {first.shape[1]} (got {cfg.input_nc})"
        )
    with torch.device("meta"):  # shapes only, no memory
        module = build_generator(cfg, "eval")
    check_state(module, state, source, *_hints(cfg, state))
    return Pix2PixCheckpoint(cfg, state)


def load_into(
    module: nn.Module, cfg: Pix2PixConfig, state: dict[str, torch.Tensor], source: str
) -> None:
    """Strictly load `state` into the pix2pix generator of `cfg`, naming the options to check if
    it differs."""
    load_strict(module, state, source, *_hints(cfg, state))


def _hints(cfg: Pix2PixConfig, state: dict[str, torch.Tensor]) -> tuple[str, str]:
    """What to check when the keys, or the shapes, of `state` differ from `cfg`'s generator."""
    layout = describe_layout(state)
    return (
        f"{layout}; you asked for {cfg.netG}, norm {cfg.norm}: check --netG and --norm",
        f"{layout}: check --ngf, --input-nc and --output-nc",
    )


def _keys(cfg: Pix2PixConfig, use_dropout: bool) -> set[str]:
    """The state_dict keys of `cfg`'s generator with or without dropout layers."""
    with torch.device("meta"):
        net = build_generator(dataclasses.replace(cfg, use_dropout=use_dropout), "eval")
    return set(net.state_dict())
