"""``python -m forkpoint.cli``: the ``forkpoint`` command."""

from forkpoint.cli import main

main()
