"""The pix2pixHD networks, in exactly the original layer order and parameter names.

Checkpoints of NVIDIA's pix2pixHD (`latest_net_G.pth`, `latest_net_E.pth`) therefore load into
these modules with no key mapping: the 512p global generator's keys run `model.1` ... `model.38`,
residual blocks hold `model.N.conv_block.{1,5}`, the local enhancer adds `model1_1.*` and
`model1_2.*`, the encoder's convolutions are `model.{1,4,...,25,29}`. Normalisation is
InstanceNorm2d without affine parameters or running statistics (the original's `norm='instance'`).
"""

from __future__ import annotations

import torch
from torch import nn

from p2phd.train.instance_pooling import instance_average
from p2phd.train.pix2pixhd.config import ModelConfig


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False)


def _down(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Stride-2 3x3 convolution (zero padding), norm, ReLU."""
    return [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), _norm(out_ch), nn.ReLU(True)]


def _up(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Stride-2 3x3 transposed convolution (exact 2x upsampling), norm, ReLU."""
    return [
        nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=1, output_padding=1),
        _norm(out_ch),
        nn.ReLU(True),
    ]


def _head(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Reflection-padded 7x7 convolution, norm, ReLU: the first layer of every network."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, out_ch, 7), _norm(out_ch), nn.ReLU(True)]


def _tail(in_ch: int, out_ch: int) -> list[nn.Module]:
    """Reflection-padded 7x7 convolution and tanh: the last layers of generator and encoder."""
    return [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, out_ch, 7), nn.Tanh()]


def _with_tail_skip(model: nn.Sequential, h_input: torch.Tensor, skip: torch.Tensor):
    """`model` run with `skip` concatenated onto the input of its tail (its last 3 layers)."""
    pad, conv, tanh = model[-3:]
    return tanh(conv(pad(torch.cat([model[:-3](h_input), skip], 1))))


class ResnetBlock(nn.Module):
    """x + (pad, conv3x3, norm, ReLU, pad, conv3x3, norm)(x), with reflection padding."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            _norm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            _norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class GlobalGenerator(nn.Module):
    """pix2pixHD's G1: 7x7 head, `n_downsampling` stride-2 convs, residual blocks, as many
    transposed convs, 7x7 tail and tanh. With `skip_channels` (ModelConfig.tail_skip) the tail
    also sees the input's last `skip_channels` channels (the instance features)."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        n_downsampling: int = 4,
        n_blocks: int = 9,
        skip_channels: int = 0,
    ):
        super().__init__()
        if n_blocks < 0 or n_downsampling < 0:
            raise ValueError("n_blocks and n_downsampling must be >= 0")
        self.skip_channels = skip_channels
        layers = _head(input_nc, ngf)
        for i in range(n_downsampling):
            layers += _down(ngf * 2**i, ngf * 2 ** (i + 1))
        layers += [ResnetBlock(ngf * 2**n_downsampling) for _ in range(n_blocks)]
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            layers += _up(ngf * mult, ngf * mult // 2)
        layers += _tail(ngf + skip_channels, output_nc)
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.skip_channels:
            return self.model(x)
        return _with_tail_skip(self.model, x, x[:, -self.skip_channels :])


class LocalEnhancer(nn.Module):
    """pix2pixHD's G = {G1, G2}: the global generator (without its tail) runs on the input
    downsampled `n_local_enhancers` times; each enhancer n adds its front end's output
    (`model{n}_1`) to the coarser result and refines it (`model{n}_2`)."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 32,
        n_downsample_global: int = 4,
        n_blocks_global: int = 9,
        n_local_enhancers: int = 1,
        n_blocks_local: int = 3,
    ):
        super().__init__()
        if n_local_enhancers < 1:
            raise ValueError("n_local_enhancers must be >= 1")
        self.n_local_enhancers = n_local_enhancers
        global_ngf = ngf * 2**n_local_enhancers
        g1 = GlobalGenerator(input_nc, output_nc, global_ngf, n_downsample_global, n_blocks_global)
        self.model = nn.Sequential(*list(g1.model)[:-3])  # without the global tail
        for n in range(1, n_local_enhancers + 1):
            ch = ngf * 2 ** (n_local_enhancers - n)
            front = _head(input_nc, ch) + _down(ch, ch * 2)
            back: list[nn.Module] = [ResnetBlock(ch * 2) for _ in range(n_blocks_local)]
            back += _up(ch * 2, ch)
            if n == n_local_enhancers:
                back += _tail(ngf, output_nc)
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pyramid = [x]
        for _ in range(self.n_local_enhancers):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local_enhancers + 1):
            front = getattr(self, f"model{n}_1")
            back = getattr(self, f"model{n}_2")
            out = back(front(pyramid[self.n_local_enhancers - n]) + out)
        return out


class Encoder(nn.Module):
    """pix2pixHD's feature encoder E: an encoder-decoder from the photo to `output_nc` feature
    channels (tanh), then averaged within each instance so every object gets one style vector.
    With `skip_photo` (ModelConfig.tail_skip) the tail also sees the photo itself."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 16,
        n_downsampling: int = 4,
        skip_photo: bool = False,
    ):
        super().__init__()
        self.output_nc = output_nc
        self.skip_photo = skip_photo
        layers = _head(input_nc, ngf)
        for i in range(n_downsampling):
            layers += _down(ngf * 2**i, ngf * 2 ** (i + 1))
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            layers += _up(ngf * mult, ngf * mult // 2)
        layers += _tail(ngf + input_nc * skip_photo, output_nc)
        self.model = nn.Sequential(*layers)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """Per-pixel features before instance pooling (what `encoder.onnx` computes)."""
        if not self.skip_photo:
            return self.model(image)
        return _with_tail_skip(self.model, image, image)

    def forward(self, image: torch.Tensor, instance_ids: torch.Tensor) -> torch.Tensor:
        return instance_average(self.features(image), instance_ids)


class NLayerDiscriminator(nn.Module):
    """PatchGAN with 4x4 convs; with `get_interm_feat` each stage is its own `model{j}` so
    feature matching can read every stage's output. No sigmoid (LSGAN)."""

    def __init__(
        self, input_nc: int, ndf: int = 64, n_layers: int = 3, get_interm_feat: bool = True
    ):
        super().__init__()
        self.get_interm_feat = get_interm_feat
        self.n_layers = n_layers
        kw, padw = 4, 2
        stages: list[list[nn.Module]] = [
            [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        ]
        nf = ndf
        for n in range(1, n_layers + 1):
            nf_prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            stages.append(
                [
                    nn.Conv2d(nf_prev, nf, kw, stride=stride, padding=padw),
                    _norm(nf),
                    nn.LeakyReLU(0.2, True),
                ]
            )
        stages.append([nn.Conv2d(nf, 1, kw, stride=1, padding=padw)])
        if get_interm_feat:
            for j, stage in enumerate(stages):
                setattr(self, f"model{j}", nn.Sequential(*stage))
        else:
            self.model = nn.Sequential(*[m for stage in stages for m in stage])

    def stages(self) -> list[nn.Module]:
        if self.get_interm_feat:
            return [getattr(self, f"model{j}") for j in range(self.n_layers + 2)]
        return [self.model]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output (the last one is the patch prediction)."""
        outs = []
        for stage in self.stages():
            x = stage(x)
            outs.append(x)
        return outs


class MultiscaleDiscriminator(nn.Module):
    """`num_D` PatchGANs on the input downsampled 0..num_D-1 times. Parameter names follow the
    original (`scale{i}_layer{j}` with intermediate features, `layer{i}` without); scale
    num_D-1 sees the full resolution."""

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        num_D: int = 2,  # noqa: N803  (the original option's name)
        get_interm_feat: bool = True,
    ):
        super().__init__()
        self.num_D = num_D
        self.n_layers = n_layers
        self.get_interm_feat = get_interm_feat
        for i in range(num_D):
            net = NLayerDiscriminator(input_nc, ndf, n_layers, get_interm_feat)
            if get_interm_feat:
                for j in range(n_layers + 2):
                    setattr(self, f"scale{i}_layer{j}", getattr(net, f"model{j}"))
            else:
                setattr(self, f"layer{i}", net.model)
        self.downsample = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def _scale(self, i: int) -> list[nn.Module]:
        if self.get_interm_feat:
            return [getattr(self, f"scale{i}_layer{j}") for j in range(self.n_layers + 2)]
        return [getattr(self, f"layer{i}")]

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """For each scale, finest first: the list of stage outputs (last = prediction)."""
        results = []
        for i in range(self.num_D):
            h, outs = x, []
            for stage in self._scale(self.num_D - 1 - i):
                h = stage(h)
                outs.append(h)
            results.append(outs)
            if i != self.num_D - 1:
                x = self.downsample(x)
        return results


def build_generator(cfg: ModelConfig) -> nn.Module:
    """The generator `cfg` describes: GlobalGenerator for netG 'global', else LocalEnhancer."""
    if cfg.netG == "global":
        skip = cfg.feat_num if cfg.tail_skip else 0
        return GlobalGenerator(
            cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.n_downsample_global, cfg.n_blocks_global, skip
        )
    return LocalEnhancer(
        cfg.input_nc,
        cfg.output_nc,
        cfg.ngf,
        cfg.n_downsample_global,
        cfg.n_blocks_global,
        cfg.n_local_enhancers,
        cfg.n_blocks_local,
    )


def build_encoder(cfg: ModelConfig) -> Encoder:
    """The feature encoder: photo (output_nc channels) -> feat_num instance-pooled channels."""
    if cfg.feat_num < 1:
        raise ValueError("an encoder needs feat_num >= 1")
    return Encoder(cfg.output_nc, cfg.feat_num, cfg.nef, cfg.n_downsample_E, cfg.tail_skip)


def build_discriminator(
    cfg: ModelConfig,
    num_D: int = 2,  # noqa: N803
    n_layers: int = 3,
    ndf: int = 64,
    get_interm_feat: bool = True,
) -> MultiscaleDiscriminator:
    """The multiscale discriminator, conditioned on the label input (one-hot ⊕ edges) and the
    image as in the original: input channels label_nc + instance + output_nc."""
    input_nc = cfg.label_nc + int(cfg.instance) + cfg.output_nc
    return MultiscaleDiscriminator(input_nc, ndf, n_layers, num_D, get_interm_feat)
