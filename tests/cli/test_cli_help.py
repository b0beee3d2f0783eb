"""Every command teaches: it has help, and the help carries an example."""

import click
import pytest
from click.testing import CliRunner

from ragindex.cli import main


def _commands(group, prefix=()):
    for name, cmd in group.commands.items():
        path = prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path)
        else:
            yield path


@pytest.mark.parametrize("path", list(_commands(main)), ids=" ".join)
def test_every_command_has_help_with_example(path):
    res = CliRunner().invoke(main, [*path, "--help"])
    assert res.exit_code == 0
    assert "Example:" in res.output, f"`ragindex {' '.join(path)} --help` has no example"
