"""The pix2pix / CycleGAN networks (junyanz's pytorch-CycleGAN-and-pix2pix), in exactly the
original layer order and parameter names, so its `latest_net_G.pth` / `latest_net_G_A.pth` load
with no key mapping.

- `UnetGenerator`: nested `UnetSkipConnectionBlock`s; keys `model.model.0` (outermost downconv),
  `model.model.1.model.1` (next downconv), ... `model.model.3` (outermost upconv). 4x4 stride-2
  convs, LeakyReLU 0.2 down, ReLU up, Dropout(0.5) after the ngf*8 middle blocks (appended last,
  so it shifts no key).
- `ResnetGenerator`: reflect-pad 7x7 conv, two stride-2 convs, residual blocks
  (`model.N.conv_block.{1,2,5,6}`, or `{1,2,6,7}` when trained with dropout), two transposed
  convs, reflect-pad 7x7 conv, tanh.
- `NLayerDiscriminator`: the PatchGAN discriminator used to train pix2pix.

Norms: "batch" is BatchNorm2d (affine, running statistics) after bias-free convs; "instance" is
InstanceNorm2d without affine or running statistics after biased convs. With bn_mode
"image-stats", BatchNorm layers normalise each image by its own statistics (`ImageStatsBatchNorm2d`,
same parameters), which is what the original test script computes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from p2phd.train.pix2pix.config import RESNET_BLOCKS, UNET_DOWNS, Pix2PixConfig

NormFactory = Callable[[int], nn.Module]


class ImageStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises every image by its own per-channel statistics (the original
    test script's BatchNorm in training mode at batch 1, done per image for any batch), then
    applies the BatchNorm affine parameters. Keeps BatchNorm's parameter and buffer names so
    checkpoints load unchanged; the running statistics are carried but unused. Exports to ONNX
    as InstanceNormalization with the BatchNorm scale and bias."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def norm_factory(norm: str, bn_mode: str = "eval") -> NormFactory:
    """The original `get_norm_layer`: "batch" (bn_mode "image-stats" swaps in the per-image
    variant) or "instance"."""
    if norm == "instance":
        return lambda ch: nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)
    if bn_mode == "image-stats":
        return lambda ch: ImageStatsBatchNorm2d(ch, affine=True, track_running_stats=True)
    return lambda ch: nn.BatchNorm2d(ch, affine=True, track_running_stats=True)


class UnetSkipConnectionBlock(nn.Module):
    """x -> cat(x, up(submodule(down(x)))); the outermost block returns up(...) without the skip."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        norm: NormFactory,
        use_bias: bool,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        use_dropout: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(
                inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=use_bias
            )
            layers = [downrelu, downconv, norm(inner_nc), submodule, uprelu, upconv, norm(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with `num_downs` stride-2 levels (7: unet_128, 8: unet_256)."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int,
        norm: NormFactory,
        use_bias: bool,
        use_dropout: bool = False,
    ):
        super().__init__()
        if num_downs < 5:
            raise ValueError("a U-Net needs num_downs >= 5")
        kw = {"norm": norm, "use_bias": use_bias}
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, use_dropout=use_dropout, **kw
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, **kw)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, **kw)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, **kw)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, **kw
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResnetBlock(nn.Module):
    """x + (pad, conv3x3, norm, ReLU, [dropout], pad, conv3x3, norm)(x), reflection padding."""

    def __init__(self, dim: int, norm: NormFactory, use_bias: bool, use_dropout: bool):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim)]
        layers.append(nn.ReLU(True))
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.'s generator as CycleGAN uses it: 7x7 head, two stride-2 convs, residual
    blocks, two transposed convs (output_padding 1), 7x7 tail and tanh."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int,
        norm: NormFactory,
        use_bias: bool,
        use_dropout: bool = False,
        n_blocks: int = 9,
    ):
        super().__init__()
        layers = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=use_bias),
            norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            ch = ngf * 2**i
            layers += [
                nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=use_bias),
                norm(ch * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4, norm, use_bias, use_dropout) for _ in range(n_blocks)]
        for i in range(2):
            ch = ngf * 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(
                    ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm(ch // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_generator(cfg: Pix2PixConfig, bn_mode: str | None = None) -> nn.Module:
    """The generator `cfg` describes; BatchNorm per `bn_mode` (default: the config's). Call
    `.eval()` for inference: dropout is off, and "eval" BatchNorm uses its running statistics."""
    norm = norm_factory(cfg.norm, bn_mode or cfg.bn_mode)
    use_bias = cfg.norm == "instance"
    if cfg.is_unet:
        return UnetGenerator(
            cfg.input_nc, cfg.output_nc, UNET_DOWNS[cfg.netG], cfg.ngf, norm, use_bias,
            cfg.use_dropout,
        )  # fmt: skip
    return ResnetGenerator(
        cfg.input_nc, cfg.output_nc, cfg.ngf, norm, use_bias, cfg.use_dropout,
        RESNET_BLOCKS[cfg.netG],
    )  # fmt: skip


class NLayerDiscriminator(nn.Module):
    """The PatchGAN discriminator: 4x4 convs, `n_layers` stride-2 levels, one logit per patch."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        make_norm = norm_factory(norm)
        use_bias = norm == "instance"
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=use_bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
