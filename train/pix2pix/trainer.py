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
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from tqdm import tqdm

from p2phd.common.atomic import atomic_path
from p2phd.train.checkpoint import Checkpoint, save_checkpoint
from p2phd.train.epochs import EpochTrainer
from p2phd.train.pix2pix.data import Pix2PixDataset
from p2phd.train.pix2pix.networks import NLayerDiscriminator, build_generator
from p2phd.train.pix2pix.train_config import Pix2PixTrainConfig

log = logging.getLogger(__name__)

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")


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
