"""Read-only row jobs over the LangGraph tables for tools that have no user classes.

The ``forkpoint lg`` commands list threads, histories and table sizes from a
database whose graph classes they cannot import (and must not: nothing here
decodes a value). Each job is ``(sqlite3.Connection, ...) -> rows`` for
forkpoint's SQLite engine (``engine.read``), like ``store.py``'s; values stay
the JSON text they are stored as. Writing (prune, vacuum) goes through
:class:`~forkpoint.langgraph.ForkpointSaver`, never through here.
"""

from __future__ import annotations

import json
import sqlite3
from typing import NamedTuple

__all__ = ["HistoryRow", "NamespaceRow", "TableRow", "history", "namespaces", "prunable", "tables"]

TABLES = ("lg_checkpoints", "lg_blobs", "lg_list_items", "lg_writes")
_TEXT_COLUMNS = {
    "lg_checkpoints": "length(metadata) + length(channels) + length(checkpoint)",
    "lg_blobs": "length(value)",
    "lg_list_items": "length(value)",
    "lg_writes": "length(value)",
}


class NamespaceRow(NamedTuple):
    """One namespace of a thread: its checkpoint count and newest ``created_at``."""

    thread_id: str
    checkpoint_ns: str
    checkpoints: int
    latest: str


class HistoryRow(NamedTuple):
    """One checkpoint, newest first; ``metadata`` is its stored JSON text."""

    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    created_at: str
    metadata: str


class TableRow(NamedTuple):
    """Rows of one LangGraph table and the bytes of its stored JSON text."""

    table: str
    rows: int
    json_bytes: int


def namespaces(conn: sqlite3.Connection, thread_id: str | None) -> list[NamespaceRow]:
    """Every (thread, namespace) with its count, ordered; one thread's if ``thread_id``."""
    where, params = ("WHERE thread_id = ?", (thread_id,)) if thread_id is not None else ("", ())
    return [
        NamespaceRow(*row)
        for row in conn.execute(
            "SELECT thread_id, checkpoint_ns, count(*), max(created_at) FROM lg_checkpoints "  # noqa: S608 - fixed fragments
            f"{where} GROUP BY thread_id, checkpoint_ns ORDER BY thread_id, checkpoint_ns",
            params,
        )
    ]


def history(
    conn: sqlite3.Connection, thread_id: str, checkpoint_ns: str | None, limit: int | None
) -> list[HistoryRow]:
    """A thread's checkpoints newest first (insertion order), all namespaces unless one is given."""
    sql = (
        "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, created_at, metadata "
        "FROM lg_checkpoints WHERE thread_id = ?"
    )
    params: list[object] = [thread_id]
    if checkpoint_ns is not None:
        sql += " AND checkpoint_ns = ?"
        params.append(checkpoint_ns)
    sql += " ORDER BY seq DESC LIMIT ?"
    params.append(-1 if limit is None else limit)
    return [HistoryRow(*row) for row in conn.execute(sql, params)]


def prunable(conn: sqlite3.Connection, thread_ids: list[str]) -> int:
    """How many checkpoints ``prune(..., "keep_latest")`` would remove from these threads."""
    found = conn.execute(
        "SELECT count(*) - count(DISTINCT thread_id || char(0) || checkpoint_ns) "
        "FROM lg_checkpoints WHERE thread_id IN (SELECT value FROM json_each(?))",
        (json.dumps(thread_ids),),
    ).fetchone()
    return int(found[0] or 0)


def tables(conn: sqlite3.Connection) -> list[TableRow]:
    """Rows and stored JSON bytes of each LangGraph table."""
    out = []
    for table in TABLES:
        rows, size = conn.execute(
            f"SELECT count(*), coalesce(sum({_TEXT_COLUMNS[table]}), 0) FROM {table}"  # noqa: S608 - fixed names
        ).fetchone()
        out.append(TableRow(table, int(rows), int(size)))
    return out
