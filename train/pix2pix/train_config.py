"""pix2pix's training configuration (as pytorch-CycleGAN-and-pix2pix's options name it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from p2phd.common.errors import ConfigError
from p2phd.train.epochs import check_shared
from p2phd.train.family import config_from_json
from p2phd.train.pix2pix.config import Pix2PixConfig

GAN_MODES = ("vanilla", "lsgan")


@dataclass
class Pix2PixTrainConfig:
    """Field names follow the original's options (lambda_L1, gan_mode, direction, ...)."""

    family: ClassVar[str] = Pix2PixConfig.family

    model: Pix2PixConfig = field(
        default_factory=lambda: Pix2PixConfig(netG="unet_256", norm="batch", use_dropout=True)
    )
    data: str = ""  # dataset root: <phase>/ (aligned A|B) or <phase>A/ + <phase>B/
    phase: str = "train"
    direction: str = "AtoB"
    size: list[int] = field(default_factory=lambda: [256, 256])  # [H, W]
    flip: bool = True
    batch_size: int = 1
    niter: int = 100
    niter_decay: int = 100
    max_iters: int | None = None
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_L1: float = 100.0  # noqa: N815  (the original option's name)
    gan_mode: str = "vanilla"
    n_layers_D: int = 3  # noqa: N815
    ndf: int = 64
    device: str = "auto"
    checkpoint_every: int = 500
    seed: int = 0
    output: str = "runs/pix2pix"

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = Pix2PixConfig.from_json(self.model)
        if self.gan_mode not in GAN_MODES:
            raise ConfigError(f"gan_mode must be one of {GAN_MODES}, got {self.gan_mode!r}")
        m = self.model.size_multiple
        if len(self.size) != 2 or any(s < m or s % m for s in self.size):
            raise ConfigError(
                f"size {self.size}: [H, W] must be positive multiples of {m} for {self.model.netG}"
            )
        for name in ("batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_shared(self)

    def to_json(self) -> dict:
        return {**asdict(self), "model": self.model.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> Pix2PixTrainConfig:
        return config_from_json(cls, d, "pix2pix train config")
