"""The global flags (``--version``, ``-v``, ``-q``) work before and after the sub-command."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
from pipeline_support import write_toy_dataset

import td3rec.cli as cli
from td3rec import __version__


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return write_toy_dataset(tmp_path)


@pytest.mark.parametrize("args, level", [
    (["stats", "{toy}", "--k-core", "0", "-v"], logging.DEBUG),
    (["stats", "-v", "{toy}", "--k-core", "0"], logging.DEBUG),
    (["-v", "stats", "{toy}", "--k-core", "0"], logging.DEBUG),  # before: still works, not undone by the default
    (["stats", "{toy}", "--k-core", "0", "--quiet"], logging.WARNING),
    (["-q", "stats", "{toy}", "--k-core", "0"], logging.WARNING),
    (["stats", "{toy}", "--k-core", "0"], logging.INFO),
])
def test_verbosity_flags_anywhere(toy, args, level, capsys):
    assert cli.main([a.format(toy=toy) for a in args]) == 0
    assert logging.getLogger().level == level
    assert "users" in capsys.readouterr().out


@pytest.mark.parametrize("args", [["--version"], ["stats", "--version"], ["evaluate", "--version"]])
def test_version_anywhere(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"td3rec {__version__}"


def test_every_sub_command_takes_the_global_flags():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(subparsers.choices) == sorted(cli.COMMANDS)
    for name, sub in subparsers.choices.items():
        flags = {flag for action in sub._actions for flag in action.option_strings}
        assert {"--version", "-v", "--verbose", "-q", "--quiet"} <= flags, name
