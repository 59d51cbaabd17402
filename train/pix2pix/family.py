"""pix2pix as a model family (`train/family.py`): an image of `input_nc` channels in, an image
out, with a U-Net or (CycleGAN's) ResNet generator; no encoder, no feature clusters."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from p2phd.common.errors import CheckpointError, ConfigError, ExportError
from p2phd.train.family import Family, Networks, Size, image_input_fields, random_image
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.networks import build_generator
from p2phd.train.pix2pix.original_checkpoint import Pix2PixCheckpoint, load_into, load_pix2pix


def example_input(cfg: Pix2PixConfig, batch: int, h: int, w: int) -> torch.Tensor:
    return random_image(batch, h, w, channels=cfg.input_nc)


def parity_sizes(cfg: Pix2PixConfig, multiple: int) -> tuple[Size, Size]:
    """A U-Net at its smallest sizes (1x1 and 1x2 bottlenecks; 4x larger would cost 16x), a
    ResNet generator at 64x64 and 64x96."""
    if cfg.is_unet:
        return (multiple, multiple), (multiple, 2 * multiple)
    return (64, 64), (64, 96)


def manifest_inputs(cfg: Pix2PixConfig) -> dict:
    return image_input_fields(cfg.input_nc)


def check_export(
    cfg: Pix2PixConfig, generator: nn.Module, encoder: nn.Module | None, features: dict | None
) -> None:
    first = next(iter(generator.state_dict().values()))
    if first.shape[1] != cfg.input_nc:
        raise ExportError(
            f"the generator takes {first.shape[1]} input channels but the config says "
            f"input_nc {cfg.input_nc}"
        )
    if encoder is not None or features:
        raise ExportError("a pix2pix generator takes no encoder or feature clusters")


def load_networks(ckpt, source: str) -> Networks:
    """The generator in the config's BatchNorm mode, loaded strictly; no encoder."""
    generator = build_generator(ckpt.model_config)
    load_into(generator, ckpt.model_config, ckpt.generator_state, f"{source} (generator)")
    return generator, None


def load_original(
    cfg: Pix2PixConfig,
    generator_path: Path,
    encoder_path: Path | None = None,
    features_path: Path | None = None,
) -> Pix2PixCheckpoint:
    if encoder_path or features_path:
        raise CheckpointError("a pix2pix generator takes no encoder or feature clusters")
    return load_pix2pix(cfg, generator_path)


def make_trainer(raw: dict, resume: bool):
    if resume:
        raise ConfigError("--resume is not supported for pix2pix runs; start a new run")
    # Imported here: export and the engine look the family up without loading the training loop.
    from p2phd.train.pix2pix.train_config import Pix2PixTrainConfig
    from p2phd.train.pix2pix.trainer import Pix2PixTrainer

    return Pix2PixTrainer(Pix2PixTrainConfig.from_json(raw))


PIX2PIX = Family(
    name=Pix2PixConfig.family,
    config=Pix2PixConfig,
    build_generator=build_generator,
    example_input=example_input,
    parity_sizes=parity_sizes,
    manifest_inputs=manifest_inputs,
    check_export=check_export,
    load_networks=load_networks,
    load_original=load_original,
    make_trainer=make_trainer,
)
