"""Row jobs of the PostgreSQL checkpointer: saving one row, rebuilding one, on a connection.

Each function runs on a connection handed out by ``Database.run`` (which owns
retries and error translation); none opens a transaction of its own. The
statements are ``_sql``'s.
"""

from __future__ import annotations

import asyncpg

from .._delta import DELTA_MIN_CHARS, MAX_RUN, apply_deltas, make_delta
from ..codec import EncodedCheckpoint
from ..errors import SerializationError, StepConflict
from ._sql import SQL, N

__all__ = ["apply_one", "check_node", "full_row", "replace_states", "save", "stored"]

_SAVE_ATTEMPTS = 16  # a large-state save that keeps losing its race to other writers


def check_node(row: EncodedCheckpoint) -> EncodedCheckpoint:
    """PostgreSQL text cannot hold U+0000: a node name with one is refused before any SQL.

    States, queues and metadata are JSON text, where U+0000 is the six
    characters ``\\u0000`` and round-trips (metadata refuses it on every
    backend, for filters); the node name is plain text.
    """
    if "\x00" in row.node:
        raise SerializationError(
            "node name holds U+0000 (NUL), which PostgreSQL cannot store",
            thread_id=row.thread_id,
            step=row.step,
        )
    return row


def stored(record: asyncpg.Record) -> tuple[EncodedCheckpoint, int]:
    """A row read with ``SELECT <EncodedCheckpoint's fields>, encoding``: (row, encoding)."""
    values = tuple(record)
    return EncodedCheckpoint(*values[:N]), values[N]


async def full_row(conn: asyncpg.Connection, thread_id: str, step: int) -> EncodedCheckpoint | None:
    """The checkpoint at ``step`` with its full state, rebuilding a delta row (one statement)."""
    chain = [stored(r) for r in await conn.fetch(SQL.CHAIN, thread_id, step, MAX_RUN + 2)]
    if not chain or chain[0][0].step != step:
        return None
    row, encoding = chain[0]
    if encoding == 0:
        return row
    try:
        if encoding != 1:
            raise ValueError(f"unknown storage encoding {encoding!r}")
        if chain[-1][1] != 0:
            raise ValueError("the delta chain has no full state to start from")
        if any(e != 1 for _, e in chain[1:-1]):
            raise ValueError("the delta chain holds an unknown encoding")
        state = apply_deltas(chain[-1][0].state, [r.state for r, _ in reversed(chain[:-1])])
    except ValueError as exc:
        raise SerializationError(
            f"stored state cannot be rebuilt: {exc}", thread_id=thread_id, step=step
        ) from exc
    return row._replace(state=state)


def apply_one(newer: str, row: EncodedCheckpoint, encoding: int) -> str:
    """The full state of a delta row, from the full state of the row just above it."""
    try:
        if encoding != 1:
            raise ValueError(f"unknown storage encoding {encoding!r}")
        return apply_deltas(newer, [row.state])
    except ValueError as exc:
        raise SerializationError(
            f"stored state cannot be rebuilt: {exc}", thread_id=row.thread_id, step=row.step
        ) from exc


async def _refuse_or_retry(conn: asyncpg.Connection, row: EncodedCheckpoint) -> bool:
    """The step is not after the latest: False for an identical retry, else StepConflict."""
    if await full_row(conn, row.thread_id, row.step) == row:
        return False
    latest = await conn.fetchval(SQL.LATEST_STEP, row.thread_id)
    raise StepConflict(
        f"step {row.step} is not after the thread's latest step {latest}",
        thread_id=row.thread_id,
        step=row.step,
    )


async def save(
    conn: asyncpg.Connection, row: EncodedCheckpoint, meta: str | None, now: str
) -> bool:
    """Store ``row``: True stored, False an identical retry; StepConflict writing nothing."""
    params = (*row, now, meta)
    if len(row.state) < DELTA_MIN_CHARS:  # the previous row stays full: one statement
        if await conn.fetchval(SQL.SAVE, *params) is not None:
            return True
        return await _refuse_or_retry(conn, row)
    for _ in range(_SAVE_ATTEMPTS):
        previous = await conn.fetchrow(SQL.PREVIOUS, row.thread_id)
        delta = None
        if previous is not None:
            latest, run, encoding, state, xmin = previous
            if row.step <= latest:
                return await _refuse_or_retry(conn, row)
            if run < MAX_RUN and encoding == 0 and isinstance(state, str):
                delta = make_delta(state, row.state)
        if delta is None:
            if await conn.fetchval(SQL.SAVE, *params) is not None:
                return True
            if previous is None:
                return await _refuse_or_retry(conn, row)  # a racing first save won
        elif await conn.fetchval(SQL.SAVE_DELTA, *params, latest, delta, xmin) is not None:
            return True
        # Another writer moved the thread between the read and the write: read again.
    return await _refuse_or_retry(conn, row)


async def replace_states(
    conn: asyncpg.Connection,
    thread_id: str,
    latest_step: int,
    count: int,
    rows: list[EncodedCheckpoint],
) -> bool:
    """Replace a thread's rows with ``rows`` (its steps, rewritten states), stored as saves would.

    Runs inside the caller's transaction. Nothing is written unless the thread
    still has ``latest_step`` and ``count`` rows (its record is locked first).
    Each earlier row is stored as a reverse delta of the next where that pays,
    with the same rules as a save, so the thread stays as small as if it had
    been saved this way; the thread record keeps its times.
    """
    shape = await conn.fetchrow(SQL.THREAD_SHAPE, thread_id)
    if shape is None or tuple(shape) != (latest_step, count):
        return False
    stored: list[tuple[EncodedCheckpoint, int]] = []
    run = 0
    for row in rows:
        if stored:
            previous, _ = stored[-1]
            delta = None
            if len(row.state) >= DELTA_MIN_CHARS and run < MAX_RUN:
                delta = make_delta(previous.state, row.state)
            if delta is None:
                run = 0
            else:
                stored[-1] = (previous._replace(state=delta), 1)
                run += 1
        stored.append((row, 0))
    await conn.execute(SQL.DELETE_ROWS, thread_id)
    await conn.executemany(SQL.INSERT_STORED, [(*row, encoding) for row, encoding in stored])
    await conn.execute(SQL.SET_DELTA_RUN, thread_id, run)
    return True
