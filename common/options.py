"""Settings stated once: a config dataclass field that carries its command-line flag.

`option(default, help, ...)` is a `dataclasses.field` whose metadata holds a `Flag`. The CLI
generates its arguments from such fields (`p2phd.engine.apps.cli.config_flags`), as vLLM does
from its engine arguments, so a setting's default, help, choices and bounds live on the field
alone and the code that takes the config (a server, a Triton model repository) never repeats
them.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field
from typing import Any

FLAG = "p2phd.flag"
PORT = (0, 65535)  # a TCP port's bounds; 0: one the system picks
POSITIVE = (1, None)  # a count of at least one
NOT_NEGATIVE = (0, None)  # a duration


@dataclass(frozen=True)
class Flag:
    """How a config field is given on the command line."""

    help: str
    name: str | None = None  # the flag; default --field-name (a field with no default: positional)
    choices: tuple | None = None
    group: str | None = None  # the section of --help that lists it
    scale: int = 1  # the field holds the flag's value times this (a MiB flag for a bytes field)
    repeat: bool = False  # a tuple field given by repeating the flag (else: values after it)
    metavar: str | None = None
    bounds: tuple[float, float | None] | None = None  # the least and greatest value (None: any)

    def flag_name(self, field_name: str) -> str:
        return self.name or "--" + field_name.replace("_", "-")


def option(default: Any = MISSING, help: str = "", **flag: Any) -> Any:
    """A dataclass field with `default` (none: a required, positional setting) and its flag."""
    return field(default=default, metadata={FLAG: Flag(help, **flag)})


def flag_of(f: Field) -> Flag | None:
    """The flag a config field declares, or None for a field the command line does not set."""
    return f.metadata.get(FLAG)
