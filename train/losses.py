"""pix2pixHD's training losses: LSGAN, discriminator feature matching, optional VGG19 perceptual.

The VGG19 network is built here by hand with torchvision's parameter names (`features.N.weight`),
so a locally downloaded `vgg19-*.pth` loads without torchvision; nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from p2phd.common.errors import ConfigError

DiscriminatorOutput = list[list[torch.Tensor]]  # per scale: stage outputs, the last = prediction


def lsgan_loss(preds: DiscriminatorOutput, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss summed over the discriminator's scales."""
    target = 1.0 if target_is_real else 0.0
    return sum(
        F.mse_loss(scale[-1].float(), torch.full_like(scale[-1].float(), target)) for scale in preds
    )


def feature_matching_loss(
    fake: DiscriminatorOutput, real: DiscriminatorOutput, weight: float = 10.0
) -> torch.Tensor:
    """L1 between D's intermediate features on fake and real, weighted as the original:
    `weight` * 1/num_D * 4/(n_layers+1) per stage (the prediction stage excluded)."""
    num_d = len(fake)
    n_layers = len(fake[0]) - 2
    stage_weight = weight * (1.0 / num_d) * (4.0 / (n_layers + 1))
    loss = fake[0][0].new_zeros((), dtype=torch.float32)
    for f_scale, r_scale in zip(fake, real, strict=True):
        for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
            loss = loss + stage_weight * F.l1_loss(f.float(), r.detach().float())
    return loss


# torchvision's vgg19 "features": channels per conv, "M" for a 2x2 max-pool.
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M")
_VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))  # relu1_1 ... relu5_1
_VGG_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)


class VGG19Features(nn.Module):
    """torchvision's `vgg19().features` up to relu5_1 (layer 29), same indices and names."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        layers += [nn.Conv2d(512, 512, 3, padding=1), nn.ReLU(inplace=True)]  # conv5_1, relu5_1
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for start, stop in _VGG_SLICES:
            for layer in self.features[start:stop]:
                x = layer(x)
            outs.append(x)
        return outs


def load_vgg19(path: str | Path | None) -> VGG19Features:
    """VGG19 features with weights from a local torchvision state_dict file, frozen."""
    if not path:
        raise ConfigError(
            "use_vgg needs vgg_weights: a local torchvision vgg19 .pth file (nothing is downloaded)"
        )
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"vgg_weights: {path} not found (a local torchvision vgg19 .pth file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"vgg_weights: {path} is not a readable torch state_dict ({e})") from None
    net = VGG19Features()
    own = net.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ConfigError(f"vgg_weights: {path} lacks {key!r} (expected torchvision vgg19)")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ConfigError(
                f"vgg_weights: {path}: {key!r} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)}"
            )
    net.load_state_dict({k: state[k] for k in own})
    net.eval().requires_grad_(False)
    return net


class VGGLoss(nn.Module):
    """pix2pixHD's perceptual loss: weighted L1 between VGG19 relu1_1..relu5_1 features."""

    def __init__(self, vgg: VGG19Features) -> None:
        super().__init__()
        self.vgg = vgg

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fake_feats, real_feats = self.vgg(fake), self.vgg(real)
        return sum(
            w * F.l1_loss(f.float(), r.detach().float())
            for w, f, r in zip(_VGG_WEIGHTS, fake_feats, real_feats, strict=True)
        )
