"""``forkpoint``: look inside, repair and move forkpoint databases from the shell.

Works on any forkpoint database **without** the application's state classes:
every checkpointer here is opened with :class:`~forkpoint.JsonState`, which
keeps whatever JSON the state holds. Reading commands (``threads``,
``history``, ``show``, ``diff``, ``tree``, ``export``, ``check``, ``stats``)
open the file read-only and never create one; ``import``, ``fork`` and
``migrate`` create a missing database; ``delete``, ``prune`` and ``vacuum``
change an existing one (``delete`` and ``prune`` ask first, or take ``--yes``);
``upgrade`` rewrites old states with your state class (``--state MODULE:QUALNAME``).

The database is ``--db PATH``, else ``$FORKPOINT_DB``, else ``./forkpoint.db``.
Listings print tables, or JSON with ``--json``. A user mistake (missing
database, unknown thread, bad step, not a forkpoint database, newer schema)
prints one line on stderr and exits 1, without a traceback.

``forkpoint lg ...`` reads and trims the threads of forkpoint's LangGraph saver
and ``import-langgraph`` copies a LangGraph SQLite database (both need the
``langgraph`` extra; nothing else does).

One module per job: ``_app`` (the Typer app, options, running a command),
``_args`` (durations, steps, confirmation), ``_text`` (printing), ``_reads``
(the library reads commands share), and one module per group of commands.
"""

from __future__ import annotations

from . import _copy, _diff, _editing, _langgraph, _maintenance, _reading, _states, _transfer, _tree
from ._app import app

__all__ = ["app", "main"]

_COMMANDS = (
    _reading,
    _diff,
    _tree,
    _editing,
    _transfer,
    _maintenance,
    _states,
    _langgraph,
    _copy,
)  # registered on import


def main() -> None:
    """Console-script entry point (``forkpoint``)."""
    app()
