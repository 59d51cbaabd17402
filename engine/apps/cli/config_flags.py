"""Command-line flags generated from a config dataclass, and the config read back from them.

Each field declared with `p2phd.common.options.option` becomes one argument: a field without a
default is positional, `X | None` takes an X, a `tuple[T, ...]` takes its values after the flag
(or one per repeated flag), and a scaled field is given in the flag's unit. `--help` shows each
default, and a value outside the field's bounds is argparse's one-line error. So a
command states none of its settings' defaults, help, choices or bounds itself.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Collection, Mapping
from dataclasses import MISSING, Field, fields
from typing import Any

from p2phd.common.options import Flag, flag_of


def _value_type(hint: Any) -> tuple[type, bool]:
    """(the type one value is parsed as, whether the field is a tuple of them)."""
    if isinstance(hint, types.UnionType):  # X | None
        (hint,) = (a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], True
    if hint is bool or not isinstance(hint, type):
        raise TypeError(f"no flag for a field of type {hint!r}")
    return hint, False


def bounded(value_type: type, bounds: tuple[float, float | None]):
    """`value_type`, refusing a value outside `bounds` with argparse's one-line error."""
    low, high = bounds
    expected = f"expected >= {low}" if high is None else f"expected {low} to {high}"

    def parse(text: str):
        value = value_type(text)
        if not (low <= value and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"{text}: {expected}")
        return value

    parse.__name__ = value_type.__name__  # what argparse names in "invalid int value"
    return parse


def _flagged(config_class: type, only: Collection[str] | None, skip: Collection[str]):
    hints = typing.get_type_hints(config_class)
    for f in fields(config_class):
        flag = flag_of(f)
        if flag is not None and f.name not in skip and (only is None or f.name in only):
            yield f, flag, hints[f.name]


def _flag_default(f: Field, flag: Flag) -> Any:
    """The field's default in the flag's unit."""
    if f.default is None or flag.scale == 1:
        return f.default
    return f.default / flag.scale


def add_config_flags(
    parser: argparse.ArgumentParser,
    config_class: type,
    *,
    only: Collection[str] | None = None,
    skip: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
    notes: Mapping[str, str] | None = None,
) -> None:
    """One argument per flagged field of `config_class` (those in `only`, not in `skip`), its
    dest the field's name; `defaults` replaces a field's default on this command, `notes` adds
    to a flag's help."""
    defaults, notes = defaults or {}, notes or {}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f, flag, hint in _flagged(config_class, only, skip):
        value_type, many = _value_type(hint)
        if flag.scale != 1:  # 1.5 (MiB) of a field counted in bytes
            value_type = float
        default = defaults.get(f.name, _flag_default(f, flag))
        text = flag.help + notes.get(f.name, "")
        if default is not None and default != () and default is not MISSING:
            text += " (default %(default)s)"
        if flag.bounds is not None:
            value_type = bounded(value_type, flag.bounds)
        kwargs: dict[str, Any] = {"type": value_type, "help": text, "metavar": flag.metavar}
        if flag.choices is not None:
            kwargs["choices"] = flag.choices
        elif flag.metavar is None and f.default is not MISSING:  # --max-batch MAX_BATCH
            kwargs["metavar"] = flag.flag_name(f.name).lstrip("-").replace("-", "_").upper()
        if many and flag.repeat:
            kwargs["action"] = "append"
        elif many:
            kwargs["nargs"] = "*"
        where = parser
        if flag.group is not None:
            if flag.group not in groups:
                groups[flag.group] = parser.add_argument_group(flag.group)
            where = groups[flag.group]
        if f.default is MISSING:
            where.add_argument(f.name, **kwargs)
        else:
            # A repeated flag appends to its default: it starts from None, read back as ().
            start = None if many and flag.repeat else default
            where.add_argument(flag.flag_name(f.name), dest=f.name, default=start, **kwargs)


def config_from_args(config_class: type, args: argparse.Namespace, **given: Any) -> Any:
    """The `config_class` the parsed flags describe; a flag left at None takes the field's
    default, a field without a flag on this command its default or its value in `given`."""
    values = dict(given)
    for f, flag, hint in _flagged(config_class, None, ()):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        if _value_type(hint)[1]:
            value = tuple(value)
        elif flag.scale != 1:
            value = int(value * flag.scale)
        values[f.name] = value
    return config_class(**values)
