"""The model families p2phd knows, by the name that their configs, checkpoints, training configs
and package manifests carry ("family" in the architecture's JSON).

Training, export and the torch reference backend reach a family's code only through here. Adding
a family is one module that builds its `Family` (`train/family.py`) and one entry in REGISTRY.
"""

from __future__ import annotations

from p2phd.common.errors import ConfigError
from p2phd.train.family import Family
from p2phd.train.pix2pix.family import PIX2PIX
from p2phd.train.pix2pixhd.family import PIX2PIXHD

REGISTRY: dict[str, Family] = {family.name: family for family in (PIX2PIXHD, PIX2PIX)}

# An architecture without "family" was written before there was more than one: pix2pixHD's.
UNNAMED = PIX2PIXHD.name


def get(name: str) -> Family:
    """The family called `name`; a ConfigError listing the known ones otherwise."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(REGISTRY)
        raise ConfigError(f"unknown model family {name!r} (known: {known})") from None


def of(config) -> Family:
    """The family of a config object (its class names it)."""
    return get(config.family)


def of_training_config(raw: dict) -> Family:
    """The family a training config mapping names in `model.family` (pix2pixHD's if none)."""
    model = raw.get("model")
    return get(model.get("family", UNNAMED) if isinstance(model, dict) else UNNAMED)


def config_from_json(d: dict):
    """The config an architecture mapping describes (a checkpoint's, a manifest's, a training
    config's `model`), checked field by field by its family's config class."""
    if not isinstance(d, dict):
        raise ConfigError(f"a model architecture must be a mapping of fields, got {d!r}")
    return get(d.get("family", UNNAMED)).config.from_json(d)
