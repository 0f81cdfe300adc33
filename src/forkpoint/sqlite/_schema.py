"""What a forkpoint database's schema is, per revision, and the check that a file has exactly that.

``application_id`` and the alembic revision say a file *claims* to be
forkpoint's; they do not stop a crafted file from replacing ``threads`` by an
endless recursive view (every listing hangs) or adding a trigger that deletes
acknowledged saves. :func:`check_schema` compares what the file holds —
tables, their columns (type, NOT NULL, default, primary key), indexes (with
their key columns and collations), foreign keys — with :data:`SCHEMAS`, and
refuses any view or trigger: forkpoint creates none.

:data:`SCHEMAS` is the one place that knows each revision's schema. It is not
written by hand: ``tests/reliability/test_hardening_files.py::
test_schemas_are_what_the_migrations_build`` builds every revision with the
alembic scripts (fresh, and upgraded from each older one), compares, and on a
mismatch prints the entry to paste here. A revision in
``migrate.KNOWN_REVISIONS`` without an entry fails that test; at run time such
a revision is checked for views and triggers only.
"""

from __future__ import annotations

import sqlite3

__all__ = ["OTHER", "SCHEMAS", "check_schema", "schema_of"]

Schema = dict[str, list[str]]
"""Table name → one line per column, index and foreign key; ``OTHER`` lists views and triggers."""

OTHER = "(views, triggers, stray indexes)"

_OBJECTS = (
    "SELECT type, name, tbl_name FROM sqlite_master "
    "WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY type, name"
)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_of(conn: sqlite3.Connection) -> Schema:
    """The schema a connection's database holds, as plain lines (``sqlite_%`` internals aside).

    Run it inside one read transaction, so it describes one moment.
    """
    objects = conn.execute(_OBJECTS).fetchall()
    schema: Schema = {name: _table(conn, name) for kind, name, _ in objects if kind == "table"}
    listed = {
        line.split()[1] for lines in schema.values() for line in lines if line[:6] == "index "
    }
    other = [
        f"{kind} {name} on {table}"
        for kind, name, table in objects
        if kind != "table" and not (kind == "index" and name in listed)
    ]
    if other:
        schema[OTHER] = other
    return schema


def _table(conn: sqlite3.Connection, name: str) -> list[str]:
    """Columns in table order, then indexes and foreign keys sorted (their order means nothing)."""
    lines: list[str] = []
    keyed: list[str] = []
    for _cid, column, kind, notnull, default, pk, hidden in conn.execute(
        f"PRAGMA table_xinfo({_quoted(name)})"
    ):
        line = f"column {column} {kind.upper()}"
        line += " NOT NULL" if notnull else ""
        line += "" if default is None else f" DEFAULT {default}"
        line += f" PRIMARY KEY {pk}" if pk else ""
        line += f" HIDDEN {hidden}" if hidden else ""
        lines.append(line)
    for _seq, index, unique, origin, partial in conn.execute(f"PRAGMA index_list({_quoted(name)})"):
        keys = ", ".join(
            f"{column}{' DESC' if desc else ''} COLLATE {collation}"
            for _n, _cid, column, desc, collation, key in conn.execute(
                f"PRAGMA index_xinfo({_quoted(index)})"
            )
            if key
        )
        flags = (" UNIQUE" if unique else "") + (" PARTIAL" if partial else "")
        keyed.append(f"index {index}{flags} ({keys}) by {origin}")
    keyed += [
        "foreign key " + " ".join(str(v) for v in row[2:])
        for row in conn.execute(f"PRAGMA foreign_key_list({_quoted(name)})")
    ]
    return lines + sorted(keyed)


def check_schema(conn: sqlite3.Connection, revision: str) -> str | None:
    """Why the database is not forkpoint's schema at ``revision``, or None if it is."""
    found = schema_of(conn)
    if OTHER in found:
        return "it holds what forkpoint never creates: " + "; ".join(found[OTHER])
    expected = SCHEMAS.get(revision)
    if expected is None or found == expected:
        return None
    differ = sorted(
        name for name in set(found) | set(expected) if found.get(name) != expected.get(name)
    )
    return f"its tables differ from schema revision {revision}'s: {', '.join(differ)}"


# --- generated: see the module docstring (do not edit by hand) -------------------------------

SCHEMAS: dict[str, Schema] = {
    "0001": {
        "alembic_version": [
            "column version_num VARCHAR(32) NOT NULL PRIMARY KEY 1",
            "index sqlite_autoindex_alembic_version_1 UNIQUE (version_num COLLATE BINARY) by pk",
        ],
        "checkpoints": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column step INTEGER NOT NULL PRIMARY KEY 2",
            "column created_at TEXT NOT NULL",
            "column node TEXT NOT NULL",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "column queue TEXT NOT NULL",
            "column state TEXT NOT NULL",
            "index sqlite_autoindex_checkpoints_1 UNIQUE (thread_id COLLATE BINARY, step COLLATE BINARY) by pk",
        ],
        "threads": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column created_at TEXT NOT NULL",
            "column updated_at TEXT NOT NULL",
            "column latest_step INTEGER NOT NULL",
            "column checkpoint_count INTEGER NOT NULL",
            "column parent_thread_id TEXT",
            "column parent_step INTEGER",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "index ix_threads_parent (parent_thread_id COLLATE BINARY) by c",
            "index ix_threads_updated_at (updated_at COLLATE BINARY) by c",
            "index sqlite_autoindex_threads_1 UNIQUE (thread_id COLLATE BINARY) by pk",
        ],
    },
    "0002": {
        "alembic_version": [
            "column version_num VARCHAR(32) NOT NULL PRIMARY KEY 1",
            "index sqlite_autoindex_alembic_version_1 UNIQUE (version_num COLLATE BINARY) by pk",
        ],
        "checkpoints": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column step INTEGER NOT NULL PRIMARY KEY 2",
            "column created_at TEXT NOT NULL",
            "column node TEXT NOT NULL",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "column queue TEXT NOT NULL",
            "column state TEXT NOT NULL",
            "column encoding INTEGER NOT NULL DEFAULT 0",
            "index sqlite_autoindex_checkpoints_1 UNIQUE (thread_id COLLATE BINARY, step COLLATE BINARY) by pk",
        ],
        "threads": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column created_at TEXT NOT NULL",
            "column updated_at TEXT NOT NULL",
            "column latest_step INTEGER NOT NULL",
            "column checkpoint_count INTEGER NOT NULL",
            "column parent_thread_id TEXT",
            "column parent_step INTEGER",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "column delta_run INTEGER NOT NULL DEFAULT 0",
            "index ix_threads_parent (parent_thread_id COLLATE BINARY) by c",
            "index ix_threads_updated_at (updated_at COLLATE BINARY) by c",
            "index sqlite_autoindex_threads_1 UNIQUE (thread_id COLLATE BINARY) by pk",
        ],
    },
    "0003": {
        "alembic_version": [
            "column version_num VARCHAR(32) NOT NULL PRIMARY KEY 1",
            "index sqlite_autoindex_alembic_version_1 UNIQUE (version_num COLLATE BINARY) by pk",
        ],
        "checkpoints": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column step INTEGER NOT NULL PRIMARY KEY 2",
            "column created_at TEXT NOT NULL",
            "column node TEXT NOT NULL",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "column queue TEXT NOT NULL",
            "column state TEXT NOT NULL",
            "column encoding INTEGER NOT NULL DEFAULT 0",
            "column state_version INTEGER NOT NULL DEFAULT 1",
            "index sqlite_autoindex_checkpoints_1 UNIQUE (thread_id COLLATE BINARY, step COLLATE BINARY) by pk",
        ],
        "threads": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column created_at TEXT NOT NULL",
            "column updated_at TEXT NOT NULL",
            "column latest_step INTEGER NOT NULL",
            "column checkpoint_count INTEGER NOT NULL",
            "column parent_thread_id TEXT",
            "column parent_step INTEGER",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "column delta_run INTEGER NOT NULL DEFAULT 0",
            "index ix_threads_parent (parent_thread_id COLLATE BINARY) by c",
            "index ix_threads_updated_at (updated_at COLLATE BINARY) by c",
            "index sqlite_autoindex_threads_1 UNIQUE (thread_id COLLATE BINARY) by pk",
        ],
    },
    "0004": {
        "alembic_version": [
            "column version_num VARCHAR(32) NOT NULL PRIMARY KEY 1",
            "index sqlite_autoindex_alembic_version_1 UNIQUE (version_num COLLATE BINARY) by pk",
        ],
        "checkpoints": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column step INTEGER NOT NULL PRIMARY KEY 2",
            "column created_at TEXT NOT NULL",
            "column node TEXT NOT NULL",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "column queue TEXT NOT NULL",
            "column state TEXT NOT NULL",
            "column encoding INTEGER NOT NULL DEFAULT 0",
            "column state_version INTEGER NOT NULL DEFAULT 1",
            (
                "index sqlite_autoindex_checkpoints_1 UNIQUE (thread_id COLLATE BINARY, "
                "step COLLATE BINARY) by pk"
            ),
        ],
        "lg_blobs": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column checkpoint_ns TEXT NOT NULL PRIMARY KEY 2",
            "column channel TEXT NOT NULL PRIMARY KEY 3",
            "column key TEXT NOT NULL PRIMARY KEY 4",
            "column encoding INTEGER NOT NULL DEFAULT 0",
            "column value TEXT NOT NULL",
            (
                "index sqlite_autoindex_lg_blobs_1 UNIQUE (thread_id COLLATE BINARY, "
                "checkpoint_ns COLLATE BINARY, channel COLLATE BINARY, key COLLATE BINARY) by pk"
            ),
        ],
        "lg_checkpoints": [
            "column seq INTEGER NOT NULL PRIMARY KEY 1",
            "column thread_id TEXT NOT NULL",
            "column checkpoint_ns TEXT NOT NULL",
            "column checkpoint_id TEXT NOT NULL",
            "column parent_checkpoint_id TEXT",
            "column run_id TEXT",
            "column created_at TEXT NOT NULL",
            "column metadata TEXT NOT NULL",
            "column channels TEXT NOT NULL",
            "column checkpoint TEXT NOT NULL",
            (
                "index ix_lg_checkpoints_order (thread_id COLLATE BINARY, "
                "checkpoint_ns COLLATE BINARY, seq COLLATE BINARY) by c"
            ),
            "index ix_lg_checkpoints_run (run_id COLLATE BINARY) by c",
            (
                "index ux_lg_checkpoints_id UNIQUE (thread_id COLLATE BINARY, "
                "checkpoint_ns COLLATE BINARY, checkpoint_id COLLATE BINARY) by c"
            ),
        ],
        "lg_list_items": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column checkpoint_ns TEXT NOT NULL PRIMARY KEY 2",
            "column channel TEXT NOT NULL PRIMARY KEY 3",
            "column list_id TEXT NOT NULL PRIMARY KEY 4",
            "column idx INTEGER NOT NULL PRIMARY KEY 5",
            "column value TEXT NOT NULL",
            (
                "index sqlite_autoindex_lg_list_items_1 UNIQUE (thread_id COLLATE BINARY, "
                "checkpoint_ns COLLATE BINARY, channel COLLATE BINARY, list_id COLLATE BINARY, "
                "idx COLLATE BINARY) by pk"
            ),
        ],
        "lg_writes": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column checkpoint_ns TEXT NOT NULL PRIMARY KEY 2",
            "column checkpoint_id TEXT NOT NULL PRIMARY KEY 3",
            "column task_id TEXT NOT NULL PRIMARY KEY 4",
            "column idx INTEGER NOT NULL PRIMARY KEY 5",
            "column task_path TEXT NOT NULL DEFAULT ''",
            "column channel TEXT NOT NULL",
            "column value TEXT NOT NULL",
            (
                "index sqlite_autoindex_lg_writes_1 UNIQUE (thread_id COLLATE BINARY, "
                "checkpoint_ns COLLATE BINARY, checkpoint_id COLLATE BINARY, "
                "task_id COLLATE BINARY, idx COLLATE BINARY) by pk"
            ),
        ],
        "threads": [
            "column thread_id TEXT NOT NULL PRIMARY KEY 1",
            "column created_at TEXT NOT NULL",
            "column updated_at TEXT NOT NULL",
            "column latest_step INTEGER NOT NULL",
            "column checkpoint_count INTEGER NOT NULL",
            "column parent_thread_id TEXT",
            "column parent_step INTEGER",
            "column metadata TEXT NOT NULL DEFAULT '{}'",
            "column delta_run INTEGER NOT NULL DEFAULT 0",
            "index ix_threads_parent (parent_thread_id COLLATE BINARY) by c",
            "index ix_threads_updated_at (updated_at COLLATE BINARY) by c",
            "index sqlite_autoindex_threads_1 UNIQUE (thread_id COLLATE BINARY) by pk",
        ],
    },
}
