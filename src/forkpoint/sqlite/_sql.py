"""The SQL catalogue: every statement the SQLite backend runs, and the listing query builder.

Values are always bound parameters; a metadata filter's keys are bound too
(``json_each`` rows, not JSON paths in SQL text), so no user string ever
becomes SQL text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SQL", "filter_sql", "page_query"]


class SQL:
    """Every statement the checkpointer runs. Values are always bound parameters."""

    STORED_BYTES = (
        "SELECT thread_id, sum(length(CAST(state AS BLOB))) FROM checkpoints GROUP BY thread_id"
    )
    LATEST_BYTES = (
        "SELECT t.thread_id, length(CAST(c.state AS BLOB)) FROM threads AS t "
        "JOIN checkpoints AS c ON c.thread_id = t.thread_id AND c.step = t.latest_step"
    )

    THREAD_LATEST = "SELECT latest_step, delta_run FROM threads WHERE thread_id = ?"
    THREAD_SHAPE = "SELECT latest_step, checkpoint_count FROM threads WHERE thread_id = ?"
    SET_DELTA_RUN = "UPDATE threads SET delta_run = ? WHERE thread_id = ?"
    ROW = (
        "SELECT node, created_at, queue, metadata, state, state_version, encoding FROM checkpoints "
        "WHERE thread_id = ? AND step = ?"
    )
    LATEST_ROW = (
        "SELECT step, node, created_at, queue, metadata, state, state_version, encoding "
        "FROM checkpoints WHERE thread_id = ? ORDER BY step DESC LIMIT 1"
    )
    NEWER_STATES = "SELECT encoding, state FROM checkpoints WHERE thread_id = ? AND step > ? ORDER BY step LIMIT ?"
    STORED_STATE = "SELECT state, encoding FROM checkpoints WHERE thread_id = ? AND step = ?"
    # Re-insert rather than UPDATE: SQLite rebalances b-tree pages after a delete
    # but not after a cell shrinks in place, so an UPDATE from a large state to a
    # small delta would leave one nearly empty leaf page behind per checkpoint.
    TO_DELTA = (
        "INSERT OR REPLACE INTO checkpoints "
        "(thread_id, step, created_at, node, metadata, queue, state, encoding, state_version) "
        "SELECT thread_id, step, created_at, node, metadata, queue, ?, 1, state_version "
        "FROM checkpoints WHERE thread_id = ? AND step = ?"
    )
    RUN_BELOW = "SELECT encoding FROM checkpoints WHERE thread_id = ? AND step < ? ORDER BY step DESC LIMIT ?"
    # Newest to oldest, full rows and deltas alike: iter_states rebuilds each delta once.
    STATES_DOWN = (
        "SELECT step, node, created_at, queue, metadata, state, state_version, encoding "
        "FROM checkpoints WHERE thread_id = ? AND step <= ? ORDER BY step DESC"
    )
    RAW_STATE = "SELECT state FROM checkpoints WHERE thread_id = ? AND step = ?"
    # Columns in EncodedCheckpoint's field order: a row is bound as it is.
    INSERT = (
        "INSERT INTO checkpoints "
        "(thread_id, step, node, created_at, queue, metadata, state, state_version) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    INSERT_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count, "
        "metadata) VALUES (?, ?, ?, ?, 1, ?)"
    )
    # Changes nothing (rowcount 0) when the thread is missing or the step is not after
    # its latest, so a small-state save can try it first and skip reading the thread row.
    UPDATE_THREAD = (
        "UPDATE threads SET latest_step = ?, updated_at = ?, checkpoint_count = checkpoint_count + 1, "
        "delta_run = ?, metadata = coalesce(?, metadata) WHERE thread_id = ? AND latest_step < ?"
    )
    RESTORE_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count, "
        "parent_thread_id, parent_step, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    )
    LINEAGE = "SELECT parent_thread_id, parent_step FROM threads WHERE thread_id = ?"
    # Rows below the fork point are copied verbatim (deltas included); the fork
    # point itself is inserted in full, since it becomes the new thread's latest.
    FORK_ROWS = (
        "INSERT INTO checkpoints "
        "(thread_id, step, created_at, node, metadata, queue, state, encoding, state_version) "
        "SELECT ?, step, created_at, node, metadata, queue, state, encoding, state_version "
        "FROM checkpoints WHERE thread_id = ? AND step < ?"
    )
    FORK_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count, "
        "parent_thread_id, parent_step, delta_run, metadata) "
        "SELECT ?, ?, ?, ?, ?, ?, ?, ?, metadata FROM threads WHERE thread_id = ?"
    )
    DELETE_ROWS = "DELETE FROM checkpoints WHERE thread_id = ?"
    DELETE_THREAD = "DELETE FROM threads WHERE thread_id = ?"
    SET_THREAD_METADATA = "UPDATE threads SET metadata = ? WHERE thread_id = ?"
    # A thread listing row: the record and its latest checkpoint's node, queue and metadata,
    # one primary-key lookup per thread (a thread record without its latest row yields NULLs,
    # which decode as damage). Never the state column.
    THREAD_ROWS = (
        "SELECT t.thread_id, t.created_at, t.updated_at, t.latest_step, t.checkpoint_count, "
        "t.parent_thread_id, t.parent_step, t.metadata, c.node, c.queue, c.metadata "
        "FROM threads AS t LEFT JOIN checkpoints AS c "
        "ON c.thread_id = t.thread_id AND c.step = t.latest_step"
    )
    THREAD = THREAD_ROWS + " WHERE t.thread_id = ?"
    FORKS = THREAD_ROWS + " WHERE t.parent_thread_id = ? ORDER BY t.thread_id"
    THREADS = THREAD_ROWS
    HISTORY = (
        "SELECT step, created_at, node, metadata, queue FROM checkpoints AS c WHERE c.thread_id = ?"
    )
    # As bytes: an id that is not UTF-8 (a crafted file) must not fail an all-threads prune.
    ALL_THREAD_IDS = "SELECT CAST(thread_id AS BLOB) FROM threads ORDER BY thread_id"
    INACTIVE = "SELECT thread_id FROM threads WHERE updated_at < ? ORDER BY thread_id"
    # Rows a prune removes: the oldest steps, below the latest, below the newest
    # `keep`, and below the first step created at or after the cutoff ('~' sorts
    # after every time). Always a prefix of the history: delta rows depend only
    # on newer rows, so what remains stays readable.
    PRUNE_WHERE = (
        "FROM checkpoints WHERE thread_id = ? AND step < min(?, coalesce("
        "(SELECT step FROM checkpoints WHERE thread_id = ? ORDER BY step DESC LIMIT 1 OFFSET ?), -1), "
        "coalesce((SELECT min(step) FROM checkpoints WHERE thread_id = ? AND created_at >= ?), ?))"
    )
    PRUNE_SIZE = (
        "SELECT count(*), coalesce(sum(length(CAST(thread_id AS BLOB)) + length(CAST(node AS BLOB)) "
        "+ length(CAST(created_at AS BLOB)) + length(CAST(queue AS BLOB)) "
        "+ length(CAST(metadata AS BLOB)) + length(CAST(state AS BLOB)) + 16), 0) " + PRUNE_WHERE
    )
    PRUNE_DELETE = "DELETE " + PRUNE_WHERE
    # The retention policy inside save: everything older than the newest `keep`.
    KEEP_LAST = (
        "DELETE FROM checkpoints WHERE thread_id = ? AND step <= coalesce("
        "(SELECT step FROM checkpoints WHERE thread_id = ? ORDER BY step DESC LIMIT 1 OFFSET ?), -1)"
    )
    PRUNE_COUNT = (
        "UPDATE threads SET checkpoint_count = checkpoint_count - ?, "
        "delta_run = min(delta_run, checkpoint_count - ? - 1) WHERE thread_id = ?"
    )
    # Anything in the schema (tables, views, triggers, indexes) but SQLite's own sqlite_% objects:
    # a file holding any of it is not an empty one to create a database in.
    SCHEMA_OBJECTS = "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite!_%' ESCAPE '!'"


def filter_sql(flt: Mapping[str, Any], source: str, depth: int = 0) -> tuple[str, list[Any]]:
    """SQL condition (fixed text) and its parameters for a checked metadata filter.

    Each key is matched by a bound parameter against ``json_each`` rows, so no
    user string, not even a JSON path, ever becomes SQL text. The aliases are
    generated from the nesting depth alone.
    """
    alias = f"j{depth}"
    parts: list[str] = []
    params: list[Any] = []
    for key, expected in flt.items():
        if isinstance(expected, Mapping):
            inner, inner_params = filter_sql(expected, f"{alias}.value", depth + 1)
            cond = f"{alias}.type = 'object'" + (f" AND {inner}" if inner else "")
            leaf: list[Any] = inner_params
        elif expected is None:
            cond, leaf = f"{alias}.type = 'null'", []
        elif isinstance(expected, bool):
            cond, leaf = f"{alias}.type = ?", ["true" if expected else "false"]
        elif isinstance(expected, int | float):
            cond, leaf = f"{alias}.type IN ('integer', 'real') AND {alias}.value = ?", [expected]
        else:
            cond, leaf = f"{alias}.type = 'text' AND {alias}.value = ?", [expected]
        json_source = f"CASE WHEN json_valid({source}) THEN {source} END" if depth == 0 else source
        parts.append(
            # S608: only fixed fragments and depth-numbered aliases reach the text; keys
            # and values are the bound parameters collected alongside.
            f"EXISTS (SELECT 1 FROM json_each({json_source}) AS {alias} "  # noqa: S608
            f"WHERE {alias}.key = ? AND {cond})"
        )
        params += [key, *leaf]
    return " AND ".join(parts), params


def page_query(
    sql: str,
    params: list[Any],
    bounds: list[tuple[str, object]],
    flt: Mapping[str, Any] | None,
    metadata_column: str,
    order: str,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """A listing query: fixed SQL fragments for the bounds given, a filter, order and limit.

    Only the constant fragments passed in here become SQL text; every value is
    a bound parameter. ``flt`` was checked by the base class (``check_filter``).
    """
    for fragment, value in bounds:
        if value is not None:
            sql += " AND " + fragment
            params.append(value)
    if flt is not None:
        cond, fparams = filter_sql(flt, metadata_column)
        if cond:
            sql += " AND " + cond
            params += fparams
    sql += " ORDER BY " + order
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params
