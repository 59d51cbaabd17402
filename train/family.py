"""What a model family provides, so that training, export and the torch reference backend treat
every family alike: they find it in `families.py` by the name its config carries and call these,
never switching on a config's type.

A family's config is a dataclass with a `family` class attribute (its name), `size_multiple`,
`to_json()` (which records the name under "family") and `from_json(dict)`; that name is how a
training config, a checkpoint or a package manifest finds its family again.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from p2phd.common.errors import ConfigError

Size = tuple[int, int]
# The widest layer a config may declare: one 3x3 convolution at 4096 channels holds 600 MB of
# fp32 weights, and a manifest's architecture is rebuilt by the torch backend as stated.
MAX_CHANNELS = 4096
Networks = tuple[nn.Module, nn.Module | None]  # (generator, encoder or None)


@dataclass(frozen=True)
class Family:
    """One model family: its config class and the functions that know its networks (each
    function's config argument is an instance of that class)."""

    name: str
    config: type
    # The inference generator the config describes; call .eval() on it. Its state_dict names
    # are the checkpoints' and, through export, the ONNX initializers'.
    build_generator: Callable[[Any], nn.Module]
    # (config, batch, h, w) -> a valid random generator input, for export's trace and parity.
    example_input: Callable[[Any, int, int, int], torch.Tensor]
    # (config, size multiple) -> the (h, w) sizes export checks parity at, the first traced.
    parity_sizes: Callable[[Any, int], tuple[Size, ...]]
    # config -> the manifest fields that describe the generator's input (engine/core/package.py).
    manifest_inputs: Callable[[Any], dict]
    # (config, generator, encoder, feature clusters) -> None, or ExportError naming the mismatch.
    check_export: Callable[[Any, nn.Module, nn.Module | None, dict | None], None]
    # (checkpoint, source for messages) -> its networks, weights loaded strictly. A checkpoint
    # has .model_config and .generator_state (ours from checkpoint.py, or an original's).
    load_networks: Callable[[Any, str], Networks]
    # (config, generator file, encoder file, feature-cluster file) -> the original code's
    # checkpoint, checked key by key against the config.
    load_original: Callable[[Any, Path, Path | None, Path | None], Any]
    # (training config mapping, resume) -> a trainer: .run(), .iteration, .cfg.output.
    make_trainer: Callable[[dict, bool], Any]


def config_from_json(cls: type, d: dict, what: str):
    """`cls(**d)` for a family's config dataclass, refusing a mapping of another family, fields
    `cls` lacks and values not of their field's type (`what` names the config in messages)."""
    if d.get("family", cls.family) != cls.family:
        raise ConfigError(f"architecture family {d.get('family')!r} is not {cls.family!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names - {"family"}
    if unknown:
        raise ConfigError(f"unknown {what} field(s): {', '.join(sorted(unknown))}")
    hints = typing.get_type_hints(cls)
    for name in names & set(d):
        if not _conforms(d[name], hints[name]):
            expected = _named(hints[name])
            raise ConfigError(f"{what} field {name}: expected {expected}, got {d[name]!r}")
    return cls(**{k: v for k, v in d.items() if k in names})


def _conforms(value: Any, hint: Any) -> bool:
    """Whether a YAML/JSON value is of the type a config field declares (an int is a float; a
    mapping is a nested config; no bool is a number; a float is finite)."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return any(_conforms(value, a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if hint is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str, type(None)):
        return isinstance(value, hint)
    if is_dataclass(hint):
        return isinstance(value, dict | hint)
    return True  # any other type: the config's own checks


_NAMES = {float: ("a number", "numbers"), int: ("an integer", "integers"),
          bool: ("true or false", "booleans"), str: ("a string", "strings"),
          type(None): ("null", "nulls")}  # fmt: skip


def _named(hint: Any) -> str:
    """The type a config field declares, as its message says it."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return " or ".join(_named(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return f"a list of {_NAMES.get(typing.get_args(hint)[0], ('', 'values'))[1]}"
    return _NAMES.get(hint, ("a mapping",))[0]


def random_image(batch: int, h: int, w: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """Uniform noise in [-1, 1], [batch, channels, h, w]: a valid normalised image, the same for
    the same arguments."""
    g = torch.Generator().manual_seed(seed + 1000 * h + w)
    return torch.rand(batch, channels, h, w, generator=g) * 2 - 1


def image_input_fields(input_nc: int) -> dict:
    """Manifest fields of a generator that takes an image of `input_nc` channels in [-1, 1]."""
    return {"label_nc": 0, "instance": False, "feat_num": 0, "input_kind": "image",
            "input_nc": input_nc}  # fmt: skip
