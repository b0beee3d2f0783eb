"""``python -m ragindex.cli``: the same as the ``ragindex`` command."""

from ragindex.cli import main

main()
