"""pix2pixHD as a model family (`train/family.py`): one-hot labels, instance edges and
per-instance features in, an image out; an optional encoder and feature clusters beside it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from p2phd.common.errors import ExportError
from p2phd.train.family import Family, Networks, Size
from p2phd.train.pix2pixhd.config import ModelConfig
from p2phd.train.pix2pixhd.input_encoding import encode_input
from p2phd.train.pix2pixhd.networks import build_encoder, build_generator
from p2phd.train.pix2pixhd.original_checkpoint import load_into, load_pix2pixhd


def example_input(cfg: ModelConfig, batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A valid generator input: one-hot of random labels ⊕ edges of random instances ⊕
    features in [-1, 1]."""
    g = torch.Generator().manual_seed(seed + 1000 * h + w)
    label = torch.randint(cfg.label_nc, (batch, 1, h, w), generator=g)
    # Blocky instances (4x4 cells) so edges are sparse, as in real maps.
    cells = torch.randint(5, (batch, 1, (h + 3) // 4, (w + 3) // 4), generator=g)
    instance = cells.repeat_interleave(4, 2).repeat_interleave(4, 3)[..., :h, :w]
    feats = torch.rand(batch, cfg.feat_num, h, w, generator=g) * 2 - 1 if cfg.feat_num else None
    return encode_input(cfg, label, instance, feats)


def parity_sizes(cfg: ModelConfig, multiple: int) -> tuple[Size, Size]:
    """Two small sizes whose bottleneck is 4x4 and 4x6. Not smaller: InstanceNorm over a 2x2
    bottleneck divides by the spread of four nearly equal values and amplifies rounding (the
    512p generator measures 1.4e-4 fp32 relative error at 32x32 but 6e-6 at 64x64 and above)."""
    return (4 * multiple, 4 * multiple), (4 * multiple, 6 * multiple)


def manifest_inputs(cfg: ModelConfig) -> dict:
    return {"label_nc": cfg.label_nc, "instance": cfg.instance, "feat_num": cfg.feat_num}


def check_export(
    cfg: ModelConfig,
    generator: nn.Module,
    encoder: nn.Module | None,
    features: dict[int, np.ndarray] | None,
) -> None:
    first = next(iter(generator.state_dict().values()))
    if first.dim() == 4 and first.shape[1] != cfg.input_nc:
        raise ExportError(
            f"the generator takes {first.shape[1]} input channels but the config says "
            f"{cfg.input_nc} (label_nc {cfg.label_nc} + instance {int(cfg.instance)} "
            f"+ feat_num {cfg.feat_num})"
        )
    if (encoder is not None or features) and cfg.feat_num < 1:
        raise ExportError("an encoder or feature clusters need feat_num >= 1 in the config")
    for cls, centres in (features or {}).items():
        shape = np.shape(centres)
        if not 0 <= int(cls) < cfg.label_nc:
            raise ExportError(f"feature clusters for class {cls}: not in 0..{cfg.label_nc - 1}")
        if len(shape) != 2 or shape[1] != cfg.feat_num:
            raise ExportError(
                f"feature clusters for class {cls} have shape {list(shape)}; "
                f"expected [k, {cfg.feat_num}] (feat_num)"
            )


def load_networks(ckpt, source: str) -> Networks:
    """The generator and, when the checkpoint has one, the encoder, loaded strictly."""
    cfg = ckpt.model_config
    generator = build_generator(cfg)
    load_into(generator, ckpt.generator_state, f"{source} (generator)")
    encoder = None
    if ckpt.encoder_state is not None:
        encoder = build_encoder(cfg)
        load_into(encoder, ckpt.encoder_state, f"{source} (encoder)")
    return generator, encoder


def make_trainer(raw: dict, resume: bool):
    # Imported here: export and the engine look the family up without loading the training loop.
    from p2phd.train.pix2pixhd.train_config import TrainConfig
    from p2phd.train.pix2pixhd.trainer import Trainer

    return Trainer(TrainConfig.from_json(raw), resume=resume)


PIX2PIXHD = Family(
    name=ModelConfig.family,
    config=ModelConfig,
    build_generator=build_generator,
    example_input=example_input,
    parity_sizes=parity_sizes,
    manifest_inputs=manifest_inputs,
    check_export=check_export,
    load_networks=load_networks,
    load_original=load_pix2pixhd,
    make_trainer=make_trainer,
)
