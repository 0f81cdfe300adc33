"""forkpoint on PostgreSQL: ``PostgresCheckpointer`` (needs the ``forkpoint[postgres]`` extra).

The same contract as :class:`~forkpoint.SqliteCheckpointer` — the step rule,
delta storage, fork, listings with filters, retention and typed errors
— on a server that workers on many machines share. Importing this package
imports asyncpg; ``import forkpoint`` does not.
"""

from __future__ import annotations

from .checkpointer import DEFAULT_SCHEMA, PostgresCheckpointer

__all__ = ["DEFAULT_SCHEMA", "PostgresCheckpointer"]
