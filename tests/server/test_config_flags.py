"""The commands' flags are generated from their config dataclasses: every setting has a flag whose
default is the field's, `--help` shows it, and the parsed flags give back exactly the config."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields
from pathlib import Path

import pytest

from p2phd.common.errors import ConfigError
from p2phd.common.options import flag_of
from p2phd.engine.apps.cli import edit, export_triton, serve, triton
from p2phd.engine.apps.cli.config_flags import config_from_args
from p2phd.engine.apps.editor.config import EditorConfig
from p2phd.engine.serving.config import MODEL_SETTINGS, InstanceGroup, ServerConfig


def parser_of(command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=command.__name__.rsplit(".", 1)[1])
    command.configure(parser)
    return parser


@pytest.mark.parametrize(
    ("command", "config_class"),
    [(serve, ServerConfig), (edit, EditorConfig), (export_triton, InstanceGroup)],
)
def test_every_field_has_a_flag_with_its_default_shown_in_help(command, config_class):
    parser = parser_of(command)
    actions = {a.dest: a for a in parser._actions}
    help_text = " ".join(parser.format_help().split())
    for f in fields(config_class):
        flag = flag_of(f)
        assert flag is not None and f.name in actions, f"{f.name}: no flag"
        action = actions[f.name]
        if f.default is MISSING:
            assert not action.option_strings and action.required
            continue
        assert action.option_strings == [flag.flag_name(f.name)]
        default = action.default
        if isinstance(f.default, tuple):
            default = () if default is None else tuple(default)
        elif default is not None:
            default *= flag.scale
        assert default == f.default, f"{f.name}: flag default {default!r}"
        assert action.option_strings[0] in help_text
        if f.default not in (None, ()):
            assert f"(default {action.default})" in help_text


def test_serve_without_flags_is_the_default_config_and_each_flag_sets_its_field():
    parse = parser_of(serve).parse_args
    assert config_from_args(ServerConfig, parse(["pkg"])) == ServerConfig(model_dir=Path("pkg"))
    given = config_from_args(
        ServerConfig,
        parse(["pkg", "--max-message-mb", "1.5", "--preferred-batch", "2", "4",
               "--tls-cert", "c.pem", "--size-policy", "reject", "--grace", "2"]),
    )  # fmt: skip
    assert given.max_message_bytes == 3 << 19
    assert given.preferred_batch_sizes == (2, 4)
    assert given.tls_cert == Path("c.pem") and given.tls_key is None
    assert (given.size_policy, given.grace_seconds) == ("reject", 2.0)
    with pytest.raises(SystemExit):
        parse(["pkg", "--size-policy", "stretch"])


@pytest.mark.parametrize("command", [triton, export_triton])
def test_triton_commands_take_serves_model_flags_with_the_same_defaults(command):
    argv = ["pkg", "-o", "repo"] if command is export_triton else ["pkg"]
    args = parser_of(command).parse_args(argv)
    config = triton.server_config(args)
    assert config == ServerConfig(model_dir=Path("pkg"))
    assert args.max_queue is None  # Triton's queue stays unbounded unless --max-queue is given
    for name in (*MODEL_SETTINGS, "model_name"):
        assert hasattr(args, name), f"{command.__name__}: no flag for {name}"
    bounded = triton.server_config(parser_of(command).parse_args([*argv, "--max-queue", "5"]))
    assert bounded.max_queue == 5
    assert config_from_args(InstanceGroup, args) == InstanceGroup()
    with pytest.raises(ConfigError, match="instances 0"):
        config_from_args(InstanceGroup, parser_of(command).parse_args([*argv, "--instances", "0"]))


def test_edit_flags_give_the_editor_config():
    parse = parser_of(edit).parse_args
    assert config_from_args(EditorConfig, parse(["pkg"])) == EditorConfig(model_dir=Path("pkg"))
    given = config_from_args(EditorConfig, parse(["pkg", "--allow-host", "a", "--allow-host", "b"]))
    assert given.allow_host == ("a", "b")
