"""The model-family registry: a family registered in one entry is trained, checkpointed,
exported and rendered by the torch reference backend with no other code knowing of it, and names
that no family has are clear errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from p2phd.common.errors import ConfigError, ExportError
from p2phd.engine.apps.cli import main
from p2phd.engine.core.package import ModelPackage
from p2phd.engine.core.renderer import Renderer
from p2phd.export.checkpoint_export import export_checkpoint
from p2phd.export.package_info import describe_package
from p2phd.train import families
from p2phd.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from p2phd.train.family import Family, config_from_json, image_input_fields, random_image
from p2phd.train.pix2pixhd.config import ModelConfig


@dataclass
class ToyConfig:
    """A 1x1 convolution and tanh from `input_nc` channels to RGB."""

    family: ClassVar[str] = "toy"
    input_nc: int = 2
    size_multiple: ClassVar[int] = 1

    def to_json(self) -> dict:
        return {"family": self.family, **asdict(self)}

    @classmethod
    def from_json(cls, d: dict) -> ToyConfig:
        return config_from_json(cls, d, "toy config")


def build_toy(cfg: ToyConfig) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cfg.input_nc, 3, 1), nn.Tanh())


def load_toy(ckpt, source: str):
    generator = build_toy(ckpt.model_config)
    generator.load_state_dict(ckpt.generator_state)
    return generator, None


def check_toy(cfg, generator, encoder, features) -> None:
    if encoder is not None or features:
        raise ExportError("the toy takes no encoder")


class ToyTrainer:
    """Trains nothing: writes the initial weights as `latest.pt`, as a trainer's run ends."""

    def __init__(self, raw: dict) -> None:
        self.cfg = SimpleNamespace(output=raw["output"])
        self.model = ToyConfig.from_json(raw["model"])
        self.iteration = 0

    def run(self) -> None:
        torch.manual_seed(0)
        generator = build_toy(self.model)
        save_checkpoint(
            f"{self.cfg.output}/latest.pt", Checkpoint(self.model, generator.state_dict())
        )
        self.iteration = 1


def no_originals(*args):
    raise NotImplementedError("the toy has no original code")


TOY = Family(
    name="toy",
    config=ToyConfig,
    build_generator=build_toy,
    example_input=lambda cfg, b, h, w: random_image(b, h, w, channels=cfg.input_nc),
    parity_sizes=lambda cfg, multiple: ((8, 8), (8, 12)),
    manifest_inputs=lambda cfg: image_input_fields(cfg.input_nc),
    check_export=check_toy,
    load_networks=load_toy,
    load_original=no_originals,
    make_trainer=lambda raw, resume: ToyTrainer(raw),
)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(families.REGISTRY, TOY.name, TOY)
    return TOY


def test_a_registered_family_trains_exports_and_renders_with_the_torch_backend(toy, tmp_path):
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump({"model": {"family": "toy"}, "output": str(tmp_path)}))
    assert main(["train", "--config", str(config), "--weights-only", str(tmp_path / "w.pt")]) == 0
    ckpt = load_checkpoint(tmp_path / "w.pt")
    assert ckpt.model_config == ToyConfig()
    out = export_checkpoint(ckpt, tmp_path / "model", fp16=False)
    package = ModelPackage(out)
    assert package.manifest.architecture == {"family": "toy", "input_nc": 2}
    assert package.manifest.input_kind == "image" and package.manifest.parity["generator"] < 1e-5
    assert "architecture  toy generator: input_nc 2" in describe_package(out)

    images = np.random.default_rng(0).integers(0, 256, (2, 8, 12, 2), dtype=np.uint8)
    generator = load_toy(ckpt, "test")[0]
    with torch.no_grad():
        x = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
        expected = np.floor((generator(x).numpy().transpose(0, 2, 3, 1) + 1) * 127.5 + 0.5)
    with Renderer(out, backend="torch", precision="fp32") as renderer:
        got = renderer.render_images(images)
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_unknown_or_foreign_family_names_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown model family 'cyclegan3d' \(known: "):
        families.config_from_json({"family": "cyclegan3d", "ngf": 4})
    with pytest.raises(ConfigError, match="architecture family 'pix2pix' is not 'pix2pixhd'"):
        ModelConfig.from_json({"family": "pix2pix"})
    # Architectures written before families were named are pix2pixHD's.
    assert families.config_from_json({"ngf": 8}) == ModelConfig(ngf=8)
