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
_KEEP = f"${N + 3}::bigint"  # group commit's retention policy: keep the newest N, or NULL
# A column of the oldest existing row a batched save keeps (the new row is the newest kept).
_OLDEST = (
    "SELECT o.{} FROM checkpoints AS o WHERE o.thread_id = t.thread_id"  # noqa: S608 - a constant column name and a parameter number only
    f" ORDER BY o.step DESC LIMIT 1 OFFSET greatest({_KEEP} - 2, 0)"
)


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
    # Group commit: many saves of distinct threads as one statement (one round trip, one
    # commit): the rows' columns as arrays, then each save's now, each thread's new metadata
    # or NULL, the retention policy (keep the newest $N+3, or NULL) and each row's storage
    # encoding (a forward delta only while its thread row is locked: ``_group``). Threads are upserted
    # in id order, so concurrent batches lock rows in one order. With a policy, the rows below
    # the newest kept go in the same statement, and a thread whose oldest kept row would be a
    # forward delta is not stored here (its full row would go). Returns the thread ids stored;
    # a row not returned takes the checked path.
    SAVE_MANY = (
        f"WITH v AS (SELECT * FROM unnest({_ARRAYS}, {_NOW}::text[], {_META}::text[],"  # noqa: S608 - see the class docstring
        f" ${N + 4}::integer[]) AS v({_COLS}, now, tmeta, encoding)),"
        " t AS (INSERT INTO threads AS t (thread_id, created_at, updated_at, latest_step,"
        " checkpoint_count, metadata, delta_run)"
        " SELECT thread_id, now, now, step, 1, coalesce(tmeta, '{}'), 0 FROM v ORDER BY thread_id"
        " ON CONFLICT (thread_id) DO UPDATE SET latest_step = EXCLUDED.latest_step,"
        f" updated_at = EXCLUDED.updated_at, checkpoint_count = CASE WHEN {_KEEP} IS NULL"
        f" THEN t.checkpoint_count + 1 ELSE least(t.checkpoint_count, {_KEEP} - 1) + 1 END,"
        " delta_run = 0, metadata = CASE WHEN (SELECT v.tmeta FROM v"
        " WHERE v.thread_id = EXCLUDED.thread_id) IS NULL THEN t.metadata ELSE EXCLUDED.metadata END"
        f" WHERE t.latest_step < EXCLUDED.latest_step AND ({_KEEP} IS NULL OR {_KEEP} = 1"
        f" OR coalesce(({_OLDEST.format('encoding')}), 0) <> 2) RETURNING thread_id, latest_step),"
        " d AS (DELETE FROM checkpoints AS c USING t"
        f" WHERE {_KEEP} IS NOT NULL AND c.thread_id = t.thread_id AND c.step < CASE"
        f" WHEN {_KEEP} = 1 THEN t.latest_step ELSE ({_OLDEST.format('step')}) END)"
        f" INSERT INTO checkpoints ({_COLS}, encoding)"
        f" SELECT {', '.join('v.' + f for f in FIELDS)}, v.encoding"
        " FROM v JOIN t USING (thread_id) RETURNING thread_id"
    )
    # What a large state's save reads first, for threads $1: each thread row (its latest step
    # and row version) with the rows its latest state is rebuilt from, newest first: the
    # latest row down to the newest full row (at most $2 rows). One statement, one snapshot.
    TOP = (
        "SELECT t.thread_id, t.latest_step, t.xmin::text, c.step, c.encoding, c.state"
        " FROM threads AS t LEFT JOIN LATERAL (SELECT step, encoding, state FROM checkpoints"
        " AS c WHERE c.thread_id = t.thread_id AND c.step >= coalesce((SELECT max(k.step)"
        " FROM checkpoints AS k WHERE k.thread_id = t.thread_id AND k.encoding <> 2), 0)"
        " ORDER BY c.step DESC LIMIT $2) AS c ON true WHERE t.thread_id = ANY($1::text[])"
    )
    # The same, locking the thread rows in id order (a batch of large saves, in a transaction).
    TOP_LOCKED = TOP + " ORDER BY t.thread_id FOR UPDATE OF t"
    # The same save, its state a forward delta against the previous latest row: inserted only
    # if the thread row is still the version read with that row (xmin), else no row comes back
    # and the save starts over. Nothing is rewritten. Parameters after the save's: the
    # previous latest step and the thread row's xmin.
    SAVE_FORWARD = (
        "WITH t AS ("  # noqa: S608 - see the class docstring
        f" UPDATE threads SET latest_step = $2, updated_at = {_NOW},"
        " checkpoint_count = checkpoint_count + 1,"
        f" metadata = coalesce({_META}, metadata)"
        f" WHERE thread_id = $1 AND latest_step = ${N + 3} AND xmin::text = ${N + 4} RETURNING 1)"
        f" INSERT INTO checkpoints ({_COLS}, encoding) SELECT {_ARGS}, 2 FROM t RETURNING step"
    )
    # The retention policy inside save: the oldest row kept is the newest $2 + 1st; the rows
    # below it go, with the count, unless it is a forward delta (its full row is among them:
    # ``_rows.drop_below`` stores it in full first). Returns that row's step and encoding.
    KEEP_LAST = (
        "WITH k AS (SELECT step, encoding FROM checkpoints WHERE thread_id = $1"
        " ORDER BY step DESC LIMIT 1 OFFSET $2),"
        " d AS (DELETE FROM checkpoints WHERE thread_id = $1 AND step < (SELECT step FROM k)"
        " AND (SELECT encoding FROM k) <> 2 RETURNING 1),"
        " u AS (UPDATE threads SET checkpoint_count = checkpoint_count - (SELECT count(*) FROM d)"
        " WHERE thread_id = $1 AND EXISTS (SELECT 1 FROM d))"
        " SELECT step, encoding FROM k"
    )
    # The rows the state at step $2 is rebuilt from, at most $3, the row at $2 first: a
    # reverse delta's newer rows up to the next full one, or a forward delta's older rows
    # down to the previous full one, ascending. One statement, one snapshot.
    CHAIN = (
        f"SELECT {_COLS}, encoding FROM checkpoints"  # noqa: S608 - see the class docstring
        " WHERE thread_id = $1 AND step >= coalesce((SELECT max(step) FROM checkpoints"
        " WHERE thread_id = $1 AND step <= $2 AND encoding <> 2), $2)"
        " AND step <= coalesce((SELECT min(step) FROM checkpoints"
        " WHERE thread_id = $1 AND step >= $2 AND encoding <> 1), $2)"
        " ORDER BY step = $2 DESC, step LIMIT $3"
    )
    LATEST = (
        f"SELECT {_COLS}, encoding FROM checkpoints"  # noqa: S608 - see the class docstring
        " WHERE thread_id = $1 ORDER BY step DESC LIMIT 1"
    )
    RAW_STATE = "SELECT state FROM checkpoints WHERE thread_id = $1 AND step = $2"
    LATEST_STEP = "SELECT latest_step FROM threads WHERE thread_id = $1"
    INSERT = f"INSERT INTO checkpoints ({_COLS}) VALUES ({_ARGS})"  # noqa: S608 - see the class docstring
    # A row with its storage encoding (0 full, 1 reverse delta, 2 forward delta): rewritten
    # and restored histories.
    INSERT_STORED = (
        f"INSERT INTO checkpoints ({_COLS}, encoding)"  # noqa: S608 - see the class docstring
        f" VALUES ({_ARGS}, ${N + 1})"
    )
    THREAD_SHAPE = (
        "SELECT latest_step, checkpoint_count FROM threads WHERE thread_id = $1 FOR UPDATE"
    )
    DELETE_ROWS = "DELETE FROM checkpoints WHERE thread_id = $1"
    # A new version of the thread row (a new xmin), so a save that read the states before a
    # rewrite starts over instead of storing a delta against them.
    TOUCH_THREAD = "UPDATE threads SET delta_run = 0 WHERE thread_id = $1"
    LINEAGE = "SELECT parent_thread_id, parent_step FROM threads WHERE thread_id = $1"
    # Rows below the fork point are copied verbatim (deltas included) by one statement
    # whatever the thread's length; the fork point itself is inserted in full.
    FORK_ROWS = (
        f"INSERT INTO checkpoints ({_COLS}, encoding)"  # noqa: S608 - see the class docstring
        f" SELECT $1, {_COPY}, encoding FROM checkpoints WHERE thread_id = $2 AND step < $3"
    )
    FORK_THREAD = (
        "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count,"
        " parent_thread_id, parent_step, metadata)"
        " SELECT $1, $2, $2, $3, $4, $5, $3, metadata FROM threads WHERE thread_id = $5"
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
    # each reverse delta once, against the state it has just returned, and each run of
    # forward deltas once, up from its full row.
    STATES_DOWN = (
        f"SELECT {_COLS}, encoding FROM checkpoints"  # noqa: S608 - see the class docstring
        " WHERE thread_id = $1 AND step <= $2 ORDER BY step DESC LIMIT $3"
    )
    # The threads a prune transaction works on, locked in id order (saves wait meanwhile).
    THREAD_LATEST = (
        "SELECT thread_id, latest_step FROM threads WHERE thread_id = ANY($1::text[])"
        " ORDER BY thread_id FOR UPDATE"
    )
    ALL_THREAD_IDS = "SELECT thread_id FROM threads ORDER BY thread_id"
    # What a prune removes from one thread: the rows below a cut step that is the least of
    # the latest ($2), the newest $3 + 1st and the first created at or after the cutoff $4
    # — always a prefix of the history. Returns their count and bytes, the cut and the
    # encoding of the row there (the oldest kept: a forward delta is stored full first).
    PRUNE_SIZE = (
        "WITH c AS (SELECT least($2, coalesce((SELECT step FROM checkpoints WHERE thread_id = $1"
        " ORDER BY step DESC LIMIT 1 OFFSET $3), -1), coalesce((SELECT min(step) FROM checkpoints"
        ' WHERE thread_id = $1 AND created_at >= $4::text COLLATE "C"), $2)) AS cut)'
        " SELECT count(*), coalesce(sum(octet_length(thread_id) + octet_length(node)"
        " + octet_length(created_at) + octet_length(queue) + octet_length(metadata)"
        " + octet_length(state) + 16), 0)::bigint, (SELECT cut FROM c), (SELECT encoding"
        " FROM checkpoints WHERE thread_id = $1 AND step = (SELECT cut FROM c))"
        " FROM checkpoints WHERE thread_id = $1 AND step < (SELECT cut FROM c)"
    )
    DELETE_BELOW = "DELETE FROM checkpoints WHERE thread_id = $1 AND step < $2"
    STORE_FULL = (
        "UPDATE checkpoints SET state = $3, encoding = 0 WHERE thread_id = $1 AND step = $2"
    )
    COUNT_DOWN = "UPDATE threads SET checkpoint_count = checkpoint_count - $2 WHERE thread_id = $1"
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
