"""The architecture of a pix2pixHD model, as one dataclass shared by training, export and engine.

Field names follow the original pix2pixHD options (netG, ngf, n_downsample_global, ...), so a
user of the original code recognises them; `instance` is the positive of its `no_instance`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

from p2phd.common.errors import ConfigError
from p2phd.train.family import MAX_CHANNELS, config_from_json


@dataclass
class ModelConfig:
    family: ClassVar[str] = "pix2pixhd"

    label_nc: int = 35
    instance: bool = True
    feat_num: int = 0
    output_nc: int = 3
    netG: str = "global"  # noqa: N815  (the original option's name)
    ngf: int = 64
    n_downsample_global: int = 4
    n_blocks_global: int = 9
    n_local_enhancers: int = 1
    n_blocks_local: int = 3
    nef: int = 16
    n_downsample_E: int = 4  # noqa: N815
    # Not in the original: G's last 7x7 convolution also sees the instance-feature channels of
    # its input, and E's sees the photo, so a region's colour reaches the output without passing
    # through the InstanceNorms (which remove any scene-wide shift of the features).
    tail_skip: bool = False

    COUNTS: ClassVar[dict[str, tuple[int, int]]] = {  # the least and greatest of each
        "label_nc": (1, 1024), "ngf": (1, MAX_CHANNELS), "output_nc": (1, 4), "nef": (1, 1024),
        "n_downsample_global": (0, 8), "n_blocks_global": (0, 64), "n_local_enhancers": (0, 3),
        "n_blocks_local": (0, 64), "n_downsample_E": (0, 8),
    }  # fmt: skip

    def __post_init__(self) -> None:
        if self.netG not in ("global", "local"):
            raise ConfigError(f"netG must be 'global' or 'local', got {self.netG!r}")
        for name, (low, high) in self.COUNTS.items():
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be in {low}..{high}, got {getattr(self, name)}")
        widest = {"ngf x 2^n_downsample_global": self.ngf << self.n_downsample_global,
                  "nef x 2^n_downsample_E": self.nef << self.n_downsample_E}  # fmt: skip
        for what, channels in widest.items():
            if channels > MAX_CHANNELS:
                raise ConfigError(f"{what} = {channels} channels; at most {MAX_CHANNELS}")
        if self.feat_num < 0:
            raise ConfigError(f"feat_num must be >= 0, got {self.feat_num}")
        if self.tail_skip and (self.feat_num < 1 or self.netG != "global"):
            raise ConfigError("tail_skip needs feat_num >= 1 and netG 'global'")

    @property
    def input_nc(self) -> int:
        """Generator input channels: one-hot ⊕ instance edges ⊕ instance features."""
        return self.label_nc + int(self.instance) + self.feat_num

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this for the generator's down/up sampling."""
        local = self.n_local_enhancers if self.netG == "local" else 0
        return 2 ** (self.n_downsample_global + local)

    def to_json(self) -> dict:
        return {"family": self.family, **asdict(self)}

    @classmethod
    def from_json(cls, d: dict) -> ModelConfig:
        return config_from_json(cls, d, "model config")
