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

from ..codec import EncodedCheckpoint

__all__ = ["FIELDS", "SQL", "N", "page"]

# A checkpoint row's columns are EncodedCheckpoint's fields, in its order: a row is bound as
# it is, and a row read back is built from the same columns. The catalogue follows the codec
# (a new field is a new column, added by its migration) instead of repeating the list.
FIELDS = EncodedCheckpoint._fields
N = len(FIELDS)
_COLS = ", ".join(FIELDS)
_ARGS = ", ".join(f"${i}" for i in range(1, N + 1))
_NOW, _META = f"${N + 1}", f"${N + 2}"  # a save's time and the thread's new metadata (or NULL)
_TYPES = {"step": "bigint", "state_version": "integer"}  # every other field is text
_ARRAYS = ", ".join(f"${i}::{_TYPES.get(f, 'text')}[]" for i, f in enumerate(FIELDS, 1))
_COPY = ", ".join(f for f in FIELDS if f != "thread_id")


class SQL:
    """The catalogue. ``$1…`` are asyncpg's parameters.

    S608 is silenced on the statements built from ``FIELDS``: only the codec's
    constant field names and parameter numbers become SQL text.
    """

    # A save whose previous latest row stays full: the step check, the thread upsert and the
    # insert in one statement (one round trip, one commit). No row comes back when the step
    # is not after the thread's latest (a conflict, an identical retry, or a lost race).
    # $1..$N: the EncodedCheckpoint; then now; then the thread's new metadata or NULL.
    SAVE = (
        "WITH t AS ("  # noqa: S608 - see the class docstring
        " INSERT INTO threads AS t (thread_id, created_at, updated_at, latest_step,"
        " checkpoint_count, metadata, delta_run)"
        f" VALUES ($1, {_NOW}, {_NOW}, $2, 1, coalesce({_META}, '{{}}'), 0)"
        f" ON CONFLICT (thread_id) DO UPDATE SET latest_step = $2, updated_at = {_NOW},"
        " checkpoint_count = t.checkpoint_count + 1, delta_run = 0,"
        f" metadata = coalesce({_META}, t.metadata)"
        " WHERE t.latest_step < $2 RETURNING 1)"
        f" INSERT INTO checkpoints ({_COLS}) SELECT {_ARGS} FROM t RETURNING step"
    )
    # Group commit: many small saves of distinct threads as one statement (one round trip, one
    # commit): the rows' columns as arrays, then each save's now and each thread's new metadata
    # or NULL. Threads are upserted in id order, so concurrent batches lock rows in one order.
    # Returns the thread ids stored; a row not returned takes the checked path.
    SAVE_MANY = (
        f"WITH v AS (SELECT * FROM unnest({_ARRAYS}, {_NOW}::text[], {_META}::text[])"  # noqa: S608 - see the class docstring
        f" AS v({_COLS}, now, tmeta)),"
        " t AS (INSERT INTO threads AS t (thread_id, created_at, updated_at, latest_step,"
        " checkpoint_count, metadata, delta_run)"
        " SELECT thread_id, now, now, step, 1, coalesce(tmeta, '{}'), 0 FROM v ORDER BY thread_id"
        " ON CONFLICT (thread_id) DO UPDATE SET latest_step = EXCLUDED.latest_step,"
        " updated_at = EXCLUDED.updated_at, checkpoint_count = t.checkpoint_count + 1,"
        " delta_run = 0, metadata = CASE WHEN (SELECT v.tmeta FROM v"
        " WHERE v.thread_id = EXCLUDED.thread_id) IS NULL THEN t.metadata ELSE EXCLUDED.metadata END"
        " WHERE t.latest_step < EXCLUDED.latest_step RETURNING thread_id)"
        f" INSERT INTO checkpoints ({_COLS}) SELECT {', '.join('v.' + f for f in FIELDS)}"
        " FROM v JOIN t USING (thread_id) RETURNING thread_id"
    )
    # What a large state's save reads first: the latest row, to store it as a reverse delta.
    PREVIOUS = (
        "SELECT t.latest_step, t.delta_run, c.encoding, c.state, c.xmin::text"
        " FROM threads AS t LEFT JOIN checkpoints AS c"
        " ON c.thread_id = t.thread_id AND c.step = t.latest_step WHERE t.thread_id = $1"
    )
    # The same save, also rewriting the previous latest row (step, read with xmin) as the
    # delta — only if that row is still the thread's latest and unchanged, else no row comes
    # back and the save starts over. Parameters after the save's: step, delta, xmin.
    SAVE_DELTA = (
        "WITH t AS ("  # noqa: S608 - see the class docstring
        f" UPDATE threads SET latest_step = $2, updated_at = {_NOW},"
        " checkpoint_count = checkpoint_count + 1, delta_run = delta_run + 1,"
        f" metadata = coalesce({_META}, metadata)"
        f" WHERE thread_id = $1 AND latest_step = ${N + 3} AND EXISTS (SELECT 1 FROM checkpoints"
        f" WHERE thread_id = $1 AND step = ${N + 3} AND xmin::text = ${N + 5}) RETURNING 1),"
        f" d AS (UPDATE checkpoints SET state = ${N + 4}, encoding = 1 FROM t"
        f" WHERE thread_id = $1 AND step = ${N + 3})"
        f" INSERT INTO checkpoints ({_COLS}) SELECT {_ARGS} FROM t RETURNING step"
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
        f"SELECT {_COLS}, encoding FROM checkpoints"  # noqa: S608 - see the class docstring
        " WHERE thread_id = $1 AND step >= $2 AND step <= coalesce((SELECT min(step)"
        " FROM checkpoints WHERE thread_id = $1 AND step >= $2 AND encoding = 0), $2)"
        " ORDER BY step LIMIT $3"
    )
    LATEST = (
        f"SELECT {_COLS}, encoding FROM checkpoints"  # noqa: S608 - see the class docstring
        " WHERE thread_id = $1 ORDER BY step DESC LIMIT 1"
    )
    RAW_STATE = "SELECT state FROM checkpoints WHERE thread_id = $1 AND step = $2"
    LATEST_STEP = "SELECT latest_step FROM threads WHERE thread_id = $1"
    INSERT = f"INSERT INTO checkpoints ({_COLS}) VALUES ({_ARGS})"  # noqa: S608 - see the class docstring
    # A row with its storage encoding (0 full, 1 reverse delta): rewritten histories.
    INSERT_STORED = (
        f"INSERT INTO checkpoints ({_COLS}, encoding)"  # noqa: S608 - see the class docstring
        f" VALUES ({_ARGS}, ${N + 1})"
    )
    THREAD_SHAPE = (
        "SELECT latest_step, checkpoint_count FROM threads WHERE thread_id = $1 FOR UPDATE"
    )
    DELETE_ROWS = "DELETE FROM checkpoints WHERE thread_id = $1"
    SET_DELTA_RUN = "UPDATE threads SET delta_run = $2 WHERE thread_id = $1"
    LINEAGE = "SELECT parent_thread_id, parent_step FROM threads WHERE thread_id = $1"
    # Rows below the fork point are copied verbatim (deltas included) by one statement
    # whatever the thread's length; the fork point itself is inserted in full.
    FORK_ROWS = (
        f"INSERT INTO checkpoints ({_COLS}, encoding)"  # noqa: S608 - see the class docstring
        f" SELECT $1, {_COPY}, encoding FROM checkpoints WHERE thread_id = $2 AND step < $3"
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
    # A thread listing row: the record and its latest checkpoint's node, queue and metadata,
    # one primary-key lookup per thread; never the state column.
    THREAD_ROWS = (
        "SELECT t.thread_id, t.created_at, t.updated_at, t.latest_step, t.checkpoint_count,"
        " t.parent_thread_id, t.parent_step, t.metadata, c.node, c.queue, c.metadata"
        " FROM threads AS t LEFT JOIN checkpoints AS c"
        " ON c.thread_id = t.thread_id AND c.step = t.latest_step"
    )
    THREAD = THREAD_ROWS + " WHERE t.thread_id = $1"
    FORKS = THREAD_ROWS + " WHERE t.parent_thread_id = $1 ORDER BY t.thread_id"
    THREADS = THREAD_ROWS + " WHERE true"
    HISTORY = (
        "SELECT step, created_at, node, metadata, queue FROM checkpoints AS c"
        " WHERE c.thread_id = $1"
    )
    # Newest to oldest, full rows and deltas alike, a page at a time: iter_states rebuilds
    # each delta once, against the state it has just returned.
    STATES_DOWN = (
        f"SELECT {_COLS}, encoding FROM checkpoints"  # noqa: S608 - see the class docstring
        " WHERE thread_id = $1 AND step <= $2 ORDER BY step DESC LIMIT $3"
    )
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
    # The bytes forkpoint's tables take (heap, TOAST and indexes), before and after VACUUM.
    TABLE_BYTES = (
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_catalog.pg_class"
        " AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
    )
    VACUUM = "VACUUM (ANALYZE) threads, checkpoints"
    VACUUM_FULL = "VACUUM (FULL, ANALYZE) threads, checkpoints"


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
