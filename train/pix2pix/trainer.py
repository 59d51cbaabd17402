"""pix2pix training (Isola et al. 2017, as pytorch-CycleGAN-and-pix2pix trains it): a U-Net (or
ResNet) generator against a PatchGAN discriminator conditioned on the input, GAN loss + 100 x L1,
Adam 2e-4 / beta1 0.5, constant then linearly decaying learning rate.

Checkpoints are our format (`latest.pt`, with the Pix2PixConfig), so `p2phd export --checkpoint`
turns them into image-input packages. Simplifications against the original: images are resized
to `size` (no 286 -> 256 random crop), and a run restarts rather than resumes.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm import tqdm

from p2phd.common.atomic import atomic_path
from p2phd.common.errors import ConfigError
from p2phd.train.checkpoint import Checkpoint, save_checkpoint
from p2phd.train.epochs import EpochTrainer, check_epochs
from p2phd.train.pix2pix.config import Pix2PixConfig
from p2phd.train.pix2pix.data import Pix2PixDataset
from p2phd.train.pix2pix.networks import NLayerDiscriminator, build_generator

log = logging.getLogger(__name__)

GAN_MODES = ("vanilla", "lsgan")
LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


@dataclass
class Pix2PixTrainConfig:
    """Field names follow the original's options (lambda_L1, gan_mode, direction, ...)."""

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
        check_epochs(self.niter, self.niter_decay)

    def to_json(self) -> dict:
        return {**asdict(self), "model": self.model.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> Pix2PixTrainConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(
                f"unknown pix2pix train config field(s): {', '.join(sorted(unknown))}"
            )
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"pix2pix train config: {e}") from None


def init_weights(module: nn.Module) -> None:
    """The original's `normal` init: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def gan_loss(pred: torch.Tensor, target_is_real: bool, mode: str) -> torch.Tensor:
    """The original's GANLoss: BCE on logits ("vanilla") or least squares ("lsgan")."""
    target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    return F.binary_cross_entropy_with_logits(pred, target)


class Pix2PixTrainer(EpochTrainer):
    """One pix2pix training run in `cfg.output`."""

    def __init__(self, cfg: Pix2PixTrainConfig) -> None:
        super().__init__(cfg)
        m = cfg.model
        self.dataset = Pix2PixDataset(cfg.data, cfg.phase, tuple(cfg.size), cfg.direction)
        # Training BatchNorm uses batch statistics (train mode); bn_mode applies at inference.
        self.G = build_generator(m, "eval").to(self.device)
        self.D = NLayerDiscriminator(m.input_nc + m.output_nc, cfg.ndf, cfg.n_layers_D, m.norm)
        self.D.to(self.device)
        self.G.apply(init_weights)
        self.D.apply(init_weights)
        self.opt_G = self.adam(self.G.parameters())
        self.opt_D = self.adam(self.D.parameters())

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One D update then one G update (the original's order); returns the losses."""
        mode = self.cfg.gan_mode
        fake_b = self.G(real_a)
        self.opt_D.zero_grad(set_to_none=True)
        d_fake = gan_loss(self.D(torch.cat([real_a, fake_b.detach()], 1)), False, mode)
        d_real = gan_loss(self.D(torch.cat([real_a, real_b], 1)), True, mode)
        ((d_fake + d_real) * 0.5).backward()
        self.opt_D.step()
        self.opt_G.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        g_gan = gan_loss(self.D(torch.cat([real_a, fake_b], 1)), True, mode)
        g_l1 = F.l1_loss(fake_b, real_b)
        (g_gan + g_l1 * self.cfg.lambda_L1).backward()
        self.D.requires_grad_(True)
        self.opt_G.step()
        values = (g_gan, g_l1, d_real, d_fake)
        return {k: float(v.detach()) for k, v in zip(LOSS_NAMES, values, strict=True)}

    def run(self) -> list[dict]:
        """Train until the epochs (or max_iters) are done; return the losses of each iteration."""
        self.out.mkdir(parents=True, exist_ok=True)
        history: list[dict] = []
        gen = torch.Generator().manual_seed(self.cfg.seed)
        bs, n = self.cfg.batch_size, len(self.dataset)
        self.G.train()
        self.D.train()
        with (
            tqdm(total=self.total_iters, desc="train pix2pix", unit="it") as bar,
            atomic_path(self.out / "loss_log.csv") as log_path,
            open(log_path, "w", newline="") as log_file,
        ):
            writer = csv.DictWriter(log_file, ["iteration", "epoch", "lr", *LOSS_NAMES])
            writer.writeheader()
            while self.iteration < self.total_iters:
                lr = self.begin_epoch()
                order = torch.randperm(n, generator=gen).tolist()
                flips = (torch.rand(n, generator=gen) < 0.5).tolist()
                for start in range(0, n, bs):
                    if self.iteration >= self.total_iters:
                        break
                    idx = order[start : start + bs]
                    samples = [self.dataset.load(i, self.cfg.flip and flips[i]) for i in idx]
                    real_a = torch.stack([s["A"] for s in samples]).to(self.device)
                    real_b = torch.stack([s["B"] for s in samples]).to(self.device)
                    losses = self.step(real_a, real_b)
                    self.iteration += 1
                    row = {"iteration": self.iteration, "epoch": self.epoch, "lr": lr, **losses}
                    writer.writerow(row)
                    history.append(row)
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
                    if self.iteration % self.cfg.checkpoint_every == 0:
                        self.save(self.out / "latest.pt")
                self.epoch += 1
        self.save(self.out / "latest.pt")
        return history

    def save(self, path: Path) -> None:
        save_checkpoint(
            path,
            Checkpoint(
                model_config=self.cfg.model,
                generator_state=self.G.state_dict(),
                train_config=self.cfg.to_json(),
                discriminator_state=self.D.state_dict(),
                iteration=self.iteration,
                epoch=self.epoch,
            ),
        )
