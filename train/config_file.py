"""The YAML reader every family's training config goes through: a file's mapping with
`key=value` overrides applied (dotted keys reach into sections, values parse as YAML scalars)."""

from __future__ import annotations

from pathlib import Path

import yaml

from p2phd.common.decode import read_text_file
from p2phd.common.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20  # a training config is a page of YAML


def read_config_dict(path: str | Path | None, overrides: list[str] = ()) -> dict:
    """The YAML file's mapping (empty without a file) with the `key=value` overrides applied."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        text = read_text_file(path, "config", MAX_CONFIG_BYTES, "a YAML text file")
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(text)
    return raw
