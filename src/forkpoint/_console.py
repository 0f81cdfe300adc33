"""The ``forkpoint`` console script: starts the CLI, or says in one line how to install it.

The command's dependencies (typer, rich) live in the ``forkpoint[cli]`` extra, so a
library-only install still has a ``forkpoint`` script; without the extra it prints
how to get the CLI and exits 1 instead of showing a traceback.
"""

from __future__ import annotations

import sys

__all__ = ["CLI_PACKAGES", "main"]

CLI_PACKAGES = frozenset({"typer", "rich", "click"})
"""Top-level packages the CLI needs beyond the library; missing any means the extra is not installed."""


def main() -> None:
    """Run ``forkpoint.cli:main``; exit 1 with one line on stderr when the extra is missing."""
    try:
        from .cli import main as cli_main
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in CLI_PACKAGES:
            raise  # a broken installation of something else: show it as it is
        sys.stderr.write(
            f"forkpoint: the command line needs the 'cli' extra ({missing} is not installed): "
            "pip install 'forkpoint[cli]'\n"
        )
        raise SystemExit(1) from None
    cli_main()
