"""The architecture of a pix2pix / CycleGAN generator (junyanz's pytorch-CycleGAN-and-pix2pix),
as one dataclass shared by training, export and engine.

Field names follow that code's options (netG, ngf, norm, input_nc, output_nc; `use_dropout` is the
positive of its `no_dropout`). `bn_mode` says how BatchNorm normalises at inference: "image-stats"
(each image by its own statistics, what the original test script does) or "eval" (running
statistics); it is ignored for `norm="instance"`. Dropout is never active at inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from p2phd.common.errors import ConfigError
from p2phd.train.family import MAX_CHANNELS, config_from_json

UNET_DOWNS = {"unet_128": 7, "unet_256": 8}
RESNET_BLOCKS = {"resnet_6blocks": 6, "resnet_9blocks": 9}
NET_GS = (*UNET_DOWNS, *RESNET_BLOCKS)
NORMS = ("batch", "instance")
BN_MODES = ("image-stats", "eval")


@dataclass
class Pix2PixConfig:
    family: ClassVar[str] = "pix2pix"

    netG: str = "unet_256"  # noqa: N815  (the original option's name)
    norm: str = "batch"
    ngf: int = 64
    input_nc: int = 3
    output_nc: int = 3
    use_dropout: bool = False
    bn_mode: str = "image-stats"

    def __post_init__(self) -> None:
        if self.netG not in NET_GS:
            raise ConfigError(f"netG must be one of {', '.join(NET_GS)}, got {self.netG!r}")
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.bn_mode not in BN_MODES:
            raise ConfigError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {self.bn_mode!r}")
        for name in ("ngf", "input_nc", "output_nc"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        widest = self.ngf * (8 if self.is_unet else 4)  # the innermost layers' channels
        if widest > MAX_CHANNELS:
            raise ConfigError(f"ngf {self.ngf}: {widest} channels inside; at most {MAX_CHANNELS}")

    @property
    def is_unet(self) -> bool:
        return self.netG in UNET_DOWNS

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this: 2^num_downs for a U-Net (256 for
        unet_256), 4 for the ResNet generators' two stride-2 convolutions."""
        return 2 ** UNET_DOWNS[self.netG] if self.is_unet else 4

    def to_json(self) -> dict:
        return {"family": self.family, **asdict(self)}

    @classmethod
    def from_json(cls, d: dict) -> Pix2PixConfig:
        return config_from_json(cls, d, "pix2pix config")
