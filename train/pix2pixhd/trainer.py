"""The pix2pixHD training loop: G (+E) against a multiscale D, Adam, constant-then-linear LR.

Data order is a pure function of (seed, epoch) and every RNG is checkpointed, so `resume`
continues exactly where a run stopped: same next batches, same next losses.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from p2phd.common.atomic import atomic_path, remove_stale_temporaries
from p2phd.common.classes import default_classes
from p2phd.common.errors import CheckpointError, ConfigError
from p2phd.train.checkpoint import (
    Checkpoint,
    capture_rng,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from p2phd.train.epochs import EpochTrainer
from p2phd.train.losses import VGGLoss, feature_matching_loss, load_vgg19, lsgan_loss
from p2phd.train.pix2pixhd.data import PairedDataset, collate
from p2phd.train.pix2pixhd.input_encoding import encode_input
from p2phd.train.pix2pixhd.networks import build_discriminator, build_encoder, build_generator
from p2phd.train.pix2pixhd.train_config import TrainConfig

log = logging.getLogger(__name__)

LOSS_NAMES = ("G_GAN", "G_GAN_Feat", "G_VGG", "D_real", "D_fake", "L1")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def init_weights(module: nn.Module) -> None:
    """pix2pixHD's initialisation: conv weights from N(0, 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)


def colourise(label: torch.Tensor, label_nc: int) -> torch.Tensor:
    """Class ids [B,1,H,W] -> uint8 RGB [B,H,W,3] with the classes' palette."""
    palette = torch.tensor([c.color for c in default_classes(label_nc)], dtype=torch.uint8)
    return palette[label[:, 0].clamp(0, label_nc - 1).cpu()]


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """[-1,1] images [B,3,H,W] -> uint8 [B,H,W,3]."""
    return (
        ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5 + 0.5)
        .to(torch.uint8)
        .permute(0, 2, 3, 1)
    )


class Trainer(EpochTrainer):
    """One training run in `cfg.output`: builds the networks, optionally resumes, trains."""

    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        super().__init__(cfg)
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("precision fp16 needs a CUDA device; use bf16 on the CPU")
        m = cfg.model
        self.dataset = PairedDataset(
            cfg.data,
            m.size_multiple,
            tuple(cfg.size) if cfg.size else None,
            phase=cfg.phase,
            instance=m.instance or m.feat_num > 0,
            label_nc=m.label_nc,
        )
        self.G = build_generator(m).to(self.device)
        self.E = build_encoder(m).to(self.device) if m.feat_num > 0 else None
        self.D = build_discriminator(m, cfg.num_D, cfg.n_layers_D, cfg.ndf).to(self.device)
        for net in (self.G, self.E, self.D):
            if net is not None:
                net.apply(init_weights)
        self.vgg = VGGLoss(load_vgg19(cfg.vgg_weights)).to(self.device) if cfg.use_vgg else None
        g_params = list(self.G.parameters()) + (list(self.E.parameters()) if self.E else [])
        self.opt_G = self.adam(g_params)
        self.opt_D = self.adam(self.D.parameters())
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.epoch_iter = 0
        if resume:
            self._resume()
        elif cfg.load_global:
            self._load_global(cfg.load_global)

    # -- state ---------------------------------------------------------------------------------

    def _resume(self) -> None:
        path = self.out / "latest.pt"
        ckpt = load_checkpoint(path)
        if not ckpt.resumable:
            raise CheckpointError(f"{path}: a weights-only checkpoint cannot be resumed")
        if ckpt.model_config != self.cfg.model:
            raise ConfigError(
                f"{path}: the checkpoint's model config {ckpt.model_config} differs from the "
                f"config's {self.cfg.model}"
            )
        self.G.load_state_dict(ckpt.generator_state)
        if self.E is not None:
            self.E.load_state_dict(ckpt.encoder_state)
        self.D.load_state_dict(ckpt.discriminator_state)
        self.opt_G.load_state_dict(ckpt.optimizer_states["G"])
        self.opt_D.load_state_dict(ckpt.optimizer_states["D"])
        self.scaler.load_state_dict(ckpt.optimizer_states["scaler"])
        self.iteration, self.epoch, self.epoch_iter = ckpt.iteration, ckpt.epoch, ckpt.epoch_iter
        restore_rng(ckpt.rng)
        log.info("resumed %s at iteration %d (epoch %d)", path, self.iteration, self.epoch)

    def _load_global(self, path: str) -> None:
        """Start a local enhancer from a trained global generator (its tail dropped), and take
        E and D from the same checkpoint when their shapes match."""
        if self.cfg.model.netG != "local":
            raise ConfigError("load_global needs model.netG 'local'")
        ckpt = load_checkpoint(path)
        own = self.G.state_dict()
        taken = {k: v for k, v in ckpt.generator_state.items() if k in own}
        for key, value in taken.items():
            if value.shape != own[key].shape:
                raise CheckpointError(
                    f"{path}: {key} has shape {tuple(value.shape)}, the local enhancer's global "
                    f"part expects {tuple(own[key].shape)} (global ngf = 2 x local ngf?)"
                )
        missing = [k for k in own if k.startswith("model.") and k not in taken]
        if missing:
            raise CheckpointError(f"{path}: lacks {missing[0]} for the global part")
        self.G.load_state_dict(taken, strict=False)
        for name, net, state in (
            ("encoder", self.E, ckpt.encoder_state),
            ("discriminator", self.D, ckpt.discriminator_state),
        ):
            if net is not None and state is not None and _shapes_match(net.state_dict(), state):
                net.load_state_dict(state)
                log.info("load_global: took the %s from %s", name, path)

    def save(self, path: Path) -> None:
        save_checkpoint(
            path,
            Checkpoint(
                model_config=self.cfg.model,
                generator_state=self.G.state_dict(),
                encoder_state=self.E.state_dict() if self.E else None,
                train_config=self.cfg.to_json(),
                discriminator_state=self.D.state_dict(),
                optimizer_states={
                    "G": self.opt_G.state_dict(),
                    "D": self.opt_D.state_dict(),
                    "scaler": self.scaler.state_dict(),
                },
                iteration=self.iteration,
                epoch=self.epoch,
                epoch_iter=self.epoch_iter,
                rng=capture_rng(),
            ),
        )

    # -- loop ----------------------------------------------------------------------------------

    def epoch_plan(self, epoch: int) -> tuple[list[int], list[bool]]:
        """The sample order and flips of `epoch`: a pure function of (seed, epoch)."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        n = len(self.dataset)
        order = torch.randperm(n, generator=gen).tolist()
        flips = (torch.rand(n, generator=gen) < 0.5).tolist() if self.cfg.flip else [False] * n
        return order, flips

    def run(self) -> list[dict]:
        """Train until the epochs (or max_iters) are done; return the losses of each iteration."""
        self.out.mkdir(parents=True, exist_ok=True)
        if stale := remove_stale_temporaries(self.out):
            log.info("removed %d partial file(s) left by a killed save in %s", stale, self.out)
        log_path = self.out / "loss_log.csv"
        self._trim_log(log_path)
        history: list[dict] = []
        bar = tqdm(total=self.total_iters, initial=self.iteration, desc="train", unit="it")
        with open(log_path, "a", newline="") as log_file:
            writer = csv.DictWriter(log_file, ["iteration", "epoch", "lr", *LOSS_NAMES])
            if log_file.tell() == 0:
                writer.writeheader()
            while self.iteration < self.total_iters:
                lr = self.begin_epoch()
                self._freeze_global(self.epoch < self.cfg.niter_fix_global)
                order, flips = self.epoch_plan(self.epoch)
                bs = self.cfg.batch_size
                while (
                    self.epoch_iter < self.batches_per_epoch and self.iteration < self.total_iters
                ):
                    idx = range(self.epoch_iter * bs, min(len(order), (self.epoch_iter + 1) * bs))
                    batch = collate([self.dataset.load(order[i], flips[i]) for i in idx])
                    losses, fake = self.step(batch)
                    self.iteration += 1
                    self.epoch_iter += 1
                    row = {"iteration": self.iteration, "epoch": self.epoch, "lr": lr, **losses}
                    writer.writerow(row)
                    history.append(row)
                    bar.update(1)
                    bar.set_postfix(
                        {k: f"{v:.3f}" for k, v in losses.items() if k != "G_VGG" or self.vgg}
                    )
                    if self.iteration % self.cfg.sample_every == 0:
                        self.write_samples(batch, fake)
                    if self.iteration % self.cfg.checkpoint_every == 0:
                        log_file.flush()
                        self.checkpoint()
                if self.epoch_iter >= self.batches_per_epoch:
                    self.epoch += 1
                    self.epoch_iter = 0
        bar.close()
        if self.iteration % self.cfg.checkpoint_every != 0:
            self.checkpoint()
        return history

    def checkpoint(self) -> None:
        self.save(self.out / "latest.pt")
        if self.cfg.keep_checkpoints:
            self.save(self.out / f"iter_{self.iteration:07d}.pt")

    def step(self, batch: dict) -> tuple[dict[str, float], torch.Tensor]:
        """One G update and one D update on `batch`; returns the losses and the fake images."""
        cfg, dev = self.cfg, self.device
        label = batch["label"].to(dev)
        inst = batch["instance"].to(dev) if "instance" in batch else None
        real = batch["image"].to(dev)
        dtype = AUTOCAST_DTYPES.get(cfg.precision)
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            features = self.E(real, inst) if self.E is not None else None
            g_input = encode_input(cfg.model, label, inst, features)
            # D is conditioned on one-hot ⊕ edges only, as in the original.
            input_label = g_input[:, : cfg.model.label_nc + int(cfg.model.instance)].detach()
            fake = self.G(g_input)
            pred_fake_d = self.D(torch.cat([input_label, fake.detach()], dim=1))
            pred_real = self.D(torch.cat([input_label, real], dim=1))
            pred_fake = self.D(torch.cat([input_label, fake], dim=1))
            zero = real.new_zeros((), dtype=torch.float32)
            loss = {
                "G_GAN": lsgan_loss(pred_fake, True),
                "G_GAN_Feat": feature_matching_loss(pred_fake, pred_real, cfg.lambda_feat)
                if cfg.gan_feat_loss
                else zero,
                "G_VGG": self.vgg(fake, real) * cfg.lambda_feat if self.vgg else zero,
                "D_real": lsgan_loss(pred_real, True),
                "D_fake": lsgan_loss(pred_fake_d, False),
                "L1": (fake.float() - real).abs().mean(),
            }
        loss_g = loss["G_GAN"] + loss["G_GAN_Feat"] + loss["G_VGG"]
        if cfg.lambda_l1:
            loss_g = loss_g + loss["L1"] * cfg.lambda_l1
        loss_d = (loss["D_real"] + loss["D_fake"]) * 0.5
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_G)
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_D)
        self.scaler.update()
        values = {k: float(v.detach()) for k, v in loss.items()}  # L1 logged even when untrained
        return values, fake

    def _freeze_global(self, frozen: bool) -> None:
        """Coarse-to-fine: the local enhancer's global part (`G.model`) is fixed while `frozen`."""
        if self.cfg.model.netG == "local":
            self.G.model.requires_grad_(not frozen)

    def write_samples(self, batch: dict, fake: torch.Tensor) -> Path:
        """A PNG grid, one row per batch item: colourised label | output | target."""
        label_rgb = colourise(batch["label"], self.cfg.model.label_nc)
        rows = torch.cat([label_rgb, to_uint8(fake), to_uint8(batch["image"])], dim=2)
        grid = rows.reshape(-1, *rows.shape[2:]).numpy()
        path = self.out / "samples" / f"iter_{self.iteration:07d}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")
        return path

    def _trim_log(self, path: Path) -> None:
        """Drop log rows past the iteration we (re)start from: a killed run may have logged
        iterations after its last checkpoint, and they will be run again."""
        if not path.exists():
            return
        if self.iteration == 0:
            path.unlink()
            return
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["iteration"]) <= self.iteration)


def _shapes_match(own: dict[str, torch.Tensor], other: dict[str, torch.Tensor]) -> bool:
    return own.keys() == other.keys() and all(own[k].shape == other[k].shape for k in own)


def train(cfg: TrainConfig, resume: bool = False) -> list[dict]:
    """Run `cfg` (resuming from `cfg.output`/latest.pt when asked); returns per-iteration losses."""
    return Trainer(cfg, resume).run()
