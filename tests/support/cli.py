"""The CLI in process, with the hash embedder (``--model hash``): exit code and output, no model loaded."""

from __future__ import annotations

from click.testing import CliRunner


def ragindex(*args, input=None):
    from ragindex.cli import main

    return CliRunner().invoke(main, ["--model", "hash", *args], input=input)
