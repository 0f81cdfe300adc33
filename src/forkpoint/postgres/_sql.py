"""Every statement the PostgreSQL checkpointer runs. Values are always bound parameters.

The tables are named without a schema: each connection's ``search_path`` is
forkpoint's schema (see ``_connect.Settings``), so one catalogue serves any
schema name. Thread ids compare and sort by code point (``COLLATE "C"`` on the
columns), as in SQLite and in Python; stored times are fixed-width RFC 3339
text, compared with ``COLLATE "C"`` as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["SQL", "page"]

_THREAD_COLUMNS = (
    "thread_id, created_at, updated_at, latest_step, checkpoint_count, "
    "parent_thread_id, parent_step, metadata"
)


class SQL:
    """The catalogue. ``$1…`` are asyncpg's parameters."""

    # A save whose previous latest row stays full: the step check, the thread upsert and the
    # insert in one statement (one round trip, one commit). No row comes back when the step
    # is not after the thread's latest (a conflict, an identical retry, or a lost race).
    # $1..$7: the EncodedCheckpoint; $8: now; $9: the thread's new metadata or NULL.
    SAVE = (
        "WITH t AS ("
        " INSERT INTO threads AS t (thread_id, created_at, updated_at, latest_step,"
        " checkpoint_count, metadata, delta_run)"
        " VALUES ($1, $8, $8, $2, 1, coalesce($9, '{}'), 0)"
        " ON CONFLICT (thread_id) DO UPDATE SET latest_step = $2, updated_at = $8,"
        " checkpoint_count = t.checkpoint_count + 1, delta_run = 0,"
        " metadata = coalesce($9, t.metadata)"
        " WHERE t.latest_step < $2 RETURNING 1)"
        " INSERT INTO checkpoints (thread_id, step, node, created_at, queue, metadata, state)"
        " SELECT $1, $2, $3, $4, $5, $6, $7 FROM t RETURNING step"
    )
    # Group commit: many small saves of distinct threads as one statement (one round trip, one
    # commit). $1..$7 are the rows' columns as arrays, $8 each save's now, $9 each thread's new
    # metadata or NULL. Threads are upserted in id order, so concurrent batches lock rows in
    # one order. Returns the thread ids stored; a row not returned takes the checked path.
    SAVE_MANY = (
        "WITH v AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],"
        " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
        " AS v(thread_id, step, node, created_at, queue, metadata, state, now, tmeta)),"
        " t AS (INSERT INTO threads AS t (thread_id, created_at, updated_at, latest_step,"
        " checkpoint_count, metadata, delta_run)"
        " SELECT thread_id, now, now, step, 1, coalesce(tmeta, '{}'), 0 FROM v ORDER BY thread_id"
        " ON CONFLICT (thread_id) DO UPDATE SET latest_step = EXCLUDED.latest_step,"
        " updated_at = EXCLUDED.updated_at, checkpoint_count = t.checkpoint_count + 1,"
        " delta_run = 0, metadata = CASE WHEN (SELECT v.tmeta FROM v"
        " WHERE v.thread_id = EXCLUDED.thread_id) IS NULL THEN t.metadata ELSE EXCLUDED.metadata END"
        " WHERE t.latest_step < EXCLUDED.latest_step RETURNING thread_id)"
        " INSERT INTO checkpoints (thread_id, step, node, created_at, queue, metadata, state)"
        " SELECT v.thread_id, v.step, v.node, v.created_at, v.queue, v.metadata, v.state"
        " FROM v JOIN t USING (thread_id) RETURNING thread_id"
    )
    # What a large state's save reads first: the latest row, to store it as a reverse delta.
    PREVIOUS = (
        "SELECT t.latest_step, t.delta_run, c.encoding, c.state, c.xmin::text"
        " FROM threads AS t LEFT JOIN checkpoints AS c"
        " ON c.thread_id = t.thread_id AND c.step = t.latest_step WHERE t.thread_id = $1"
    )
    # The same save, also rewriting the previous latest row ($10, read with xmin $12) as
    # the delta $11 — only if that row is still the thread's latest and unchanged, else
    # no row comes back and the save starts over.
    SAVE_DELTA = (
        "WITH t AS ("
        " UPDATE threads SET latest_step = $2, updated_at = $8,"
        " checkpoint_count = checkpoint_count + 1, delta_run = delta_run + 1,"
        " metadata = coalesce($9, metadata)"
        " WHERE thread_id = $1 AND latest_step = $10 AND EXISTS (SELECT 1 FROM checkpoints"
        " WHERE thread_id = $1 AND step = $10 AND xmin::text = $12) RETURNING 1),"
        " d AS (UPDATE checkpoints SET state = $11, encoding = 1 FROM t"
        " WHERE thread_id = $1 AND step = $10)"
        " INSERT INTO checkpoints (thread_id, step, node, created_at, queue, metadata, state)"
        " SELECT $1, $2, $3, $4, $5, $6, $7 FROM t RETURNING step"
    )
    # The retention policy inside save: every row below the newest $2, and the count.
    KEEP_LAST = (
        "WITH d AS (DELETE FROM checkpoints WHERE thread_id = $1 AND step <= coalesce("
        "(SELECT step FROM checkpoints WHERE thread_id = $1 ORDER BY step DESC LIMIT 1 OFFSET $2),"
        " -1) RETURNING 1), n AS (SELECT count(*) AS n FROM d)"
        " UPDATE threads SET checkpoint_count = checkpoint_count - n.n,"
        " delta_run = least(delta_run, checkpoint_count - n.n - 1) FROM n"
        " WHERE thread_id = $1 AND n.n > 0"
    )
    # The row at step $2 and, when it is a reverse delta, every newer row up to the next
    # full one (at most $3 rows): one statement, one snapshot.
    CHAIN = (
        "SELECT step, encoding, state, node, created_at, queue, metadata FROM checkpoints"
        " WHERE thread_id = $1 AND step >= $2 AND step <= coalesce((SELECT min(step)"
        " FROM checkpoints WHERE thread_id = $1 AND step >= $2 AND encoding = 0), $2)"
        " ORDER BY step LIMIT $3"
    )
    LATEST = (
        "SELECT step, encoding, state, node, created_at, queue, metadata FROM checkpoints"
        " WHERE thread_id = $1 ORDER BY step DESC LIMIT 1"
    )
    RAW_STATE = "SELECT state FROM checkpoints WHERE thread_id = $1 AND step = $2"
    LATEST_STEP = "SELECT latest_step FROM threads WHERE thread_id = $1"
    INSERT = (
        "INSERT INTO checkpoints (thread_id, step, node, created_at, queue, metadata, state)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)"
    )
    LINEAGE = "SELECT parent_thread_id, parent_step FROM threads WHERE thread_id = $1"
    # Rows below the fork point are copied verbatim (deltas included) by one statement
    # whatever the thread's length; the fork point itself is inserted in full.
    FORK_ROWS = (
        "INSERT INTO checkpoints (thread_id, step, created_at, node, metadata, queue, state,"
        " encoding) SELECT $1, step, created_at, node, metadata, queue, state, encoding"
        " FROM checkpoints WHERE thread_id = $2 AND step < $3"
    )
    RUN_BELOW = (
        "SELECT encoding FROM checkpoints WHERE thread_id = $1 AND step < $2"
        " ORDER BY step DESC LIMIT $3"
    )
    FORK_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count,"
        " parent_thread_id, parent_step, delta_run, metadata)"
        " SELECT $1, $2, $2, $3, $4, $5, $3, $6, metadata FROM threads WHERE thread_id = $5"
    )
    RESTORE_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count,"
        " parent_thread_id, parent_step, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )
    THREAD_EXISTS = "SELECT 1 FROM threads WHERE thread_id = $1"
    DELETE_THREAD = (
        "WITH c AS (DELETE FROM checkpoints WHERE thread_id = $1)"
        " DELETE FROM threads WHERE thread_id = $1 RETURNING 1"
    )
    DELETE_INACTIVE = (
        'WITH gone AS (DELETE FROM threads WHERE updated_at < $1 COLLATE "C"'
        " RETURNING thread_id), c AS (DELETE FROM checkpoints"
        " WHERE thread_id IN (SELECT thread_id FROM gone))"
        " SELECT thread_id FROM gone ORDER BY thread_id"
    )
    SET_THREAD_METADATA = "UPDATE threads SET metadata = $2 WHERE thread_id = $1 RETURNING 1"
    THREAD = f"SELECT {_THREAD_COLUMNS} FROM threads WHERE thread_id = $1"  # noqa: S608 - constant
    FORKS = (
        f"SELECT {_THREAD_COLUMNS} FROM threads WHERE parent_thread_id = $1"  # noqa: S608 - constant
        " ORDER BY thread_id"
    )
    THREADS = f"SELECT {_THREAD_COLUMNS} FROM threads AS t WHERE true"  # noqa: S608 - constant
    HISTORY = "SELECT step, created_at, node, metadata FROM checkpoints AS c WHERE c.thread_id = $1"
    THREAD_LATEST = "SELECT thread_id, latest_step FROM threads WHERE thread_id = ANY($1::text[])"
    ALL_THREAD_IDS = "SELECT thread_id FROM threads ORDER BY thread_id"
    # Rows a prune removes: the oldest steps, below the latest ($2), below the newest
    # $3 + 1, and below the first step created at or after the cutoff $4 (NULL: no
    # cutoff). Always a prefix of the history: delta rows depend only on newer rows.
    PRUNE_WHERE = (
        "FROM checkpoints WHERE thread_id = $1 AND step < least($2, coalesce((SELECT step"
        " FROM checkpoints WHERE thread_id = $1 ORDER BY step DESC LIMIT 1 OFFSET $3), -1),"
        " coalesce((SELECT min(step) FROM checkpoints WHERE thread_id = $1"
        ' AND created_at >= $4::text COLLATE "C"), $2))'
    )
    PRUNE_SIZE = (
        "SELECT count(*), coalesce(sum(octet_length(thread_id) + octet_length(node)"
        " + octet_length(created_at) + octet_length(queue) + octet_length(metadata)"
        " + octet_length(state) + 16), 0)::bigint " + PRUNE_WHERE
    )
    PRUNE_DELETE = "DELETE " + PRUNE_WHERE
    PRUNE_COUNT = (
        "UPDATE threads SET checkpoint_count = checkpoint_count - $2,"
        " delta_run = least(delta_run, checkpoint_count - $2 - 1) WHERE thread_id = $1"
    )
    STORED_BYTES = (
        "SELECT thread_id, sum(pg_column_size(state))::bigint FROM checkpoints GROUP BY thread_id"
    )
    LATEST_BYTES = (
        "SELECT t.thread_id, pg_column_size(c.state)::bigint FROM threads AS t"
        " JOIN checkpoints AS c ON c.thread_id = t.thread_id AND c.step = t.latest_step"
    )
    TABLE_BYTES = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_catalog.pg_class"
        " AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
    )


def page(
    sql: str,
    params: list[Any],
    bounds: list[tuple[str, object]],
    flt: Mapping[str, Any] | None,
    metadata_column: str,
    order: str,
    limit: int | None,
) -> tuple[str, list[Any]]:
    """A listing query: constant fragments for the bounds given, a filter, order and limit.

    Each bound fragment holds one ``{}`` that becomes its parameter's number.
    A checked metadata filter is bound as one JSON document matched by jsonb
    containment (``@>``): for filters of scalars and nested objects that is
    exactly forkpoint's rule (same keys, JSON-equal values, ``true`` is not
    ``1``). Neither keys nor values ever become SQL text.
    """
    for fragment, value in bounds:
        if value is not None:
            params.append(value)
            sql += " AND " + fragment.format(f"${len(params)}")
    if flt:
        params.append(json.dumps(flt, ensure_ascii=False, allow_nan=False))
        sql += f" AND {metadata_column}::jsonb @> ${len(params)}::jsonb"
    sql += " ORDER BY " + order
    if limit is not None:
        params.append(limit)
        sql += f" LIMIT ${len(params)}"
    return sql, params
