"""The `p2phd` console script: every subcommand is listed and has its own --help."""

import subprocess
import sys

import pytest

from p2phd.engine.apps.cli import COMMANDS


def p2phd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "p2phd.engine.apps.cli", *args], capture_output=True, text=True
    )


def test_help_lists_every_subcommand():
    out = p2phd("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_subcommand_help(name):
    out = p2phd(name, "--help")
    assert out.returncode == 0, out.stderr
    assert f"p2phd {name}" in out.stdout
