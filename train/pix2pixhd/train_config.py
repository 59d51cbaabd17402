"""pix2pixHD's training configuration, one dataclass, read from YAML with `key=value` overrides.

Field names follow the original pix2pixHD options where one exists (niter, niter_decay,
lambda_feat, num_D, niter_fix_global, load_global ~ load_pretrain).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from p2phd.common.errors import ConfigError
from p2phd.train.config_file import read_config_dict
from p2phd.train.epochs import check_shared
from p2phd.train.family import config_from_json
from p2phd.train.pix2pixhd.config import ModelConfig

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    family: ClassVar[str] = ModelConfig.family

    model: ModelConfig = field(default_factory=ModelConfig)
    data: str = ""  # dataset root: Cityscapes layout or flat <phase>_label/_inst/_img
    phase: str = "train"
    size: list[int] | None = None  # [H, W]; None keeps each file's size (rounded)
    flip: bool = True  # random left-right mirroring
    batch_size: int = 1
    niter: int = 100  # epochs at the initial learning rate
    niter_decay: int = 100  # epochs of linear decay to zero
    max_iters: int | None = None  # stop after this many iterations in total (short runs)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    gan_feat_loss: bool = True
    lambda_feat: float = 10.0
    lambda_l1: float = 0.0  # pix2pix's L1 to the photo; 0 is the original pix2pixHD objective
    num_D: int = 2  # noqa: N815
    n_layers_D: int = 3  # noqa: N815
    ndf: int = 64
    use_vgg: bool = False
    vgg_weights: str | None = None  # local torchvision vgg19 .pth (never downloaded)
    load_global: str | None = None  # a global-generator checkpoint to start a local enhancer from
    niter_fix_global: int = 0  # epochs with the global part frozen (local enhancer only)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 only on CUDA)
    device: str = "auto"  # auto (cuda when available) | cpu | cuda[:N]
    checkpoint_every: int = 500  # iterations
    keep_checkpoints: bool = False  # also keep iter_XXXXXXX.pt beside latest.pt
    sample_every: int = 200  # iterations between sample grids
    seed: int = 0
    output: str = "runs/train"

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_json(self.model)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.size is not None:
            if len(self.size) != 2 or min(self.size) < 1:
                raise ConfigError(f"size must be [H, W] with positive ints, got {self.size}")
            self.size = [int(v) for v in self.size]
        for name in ("batch_size", "checkpoint_every", "sample_every", "num_D"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        check_shared(self)
        if self.niter_fix_global and self.model.netG != "local":
            raise ConfigError("niter_fix_global only applies to model.netG 'local'")
        if self.use_vgg and not self.vgg_weights:
            raise ConfigError(
                "use_vgg needs vgg_weights: a local torchvision vgg19 .pth (nothing is downloaded)"
            )

    def to_json(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        return config_from_json(cls, d, "train config")


def load_train_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """A TrainConfig from a YAML file (or the defaults) with `key=value` overrides applied;
    dotted keys reach into the model (`model.ngf=8`), values parse as YAML scalars."""
    return TrainConfig.from_json(read_config_dict(path, overrides))
