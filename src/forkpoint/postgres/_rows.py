"""Row jobs of the PostgreSQL checkpointer: saving one row, rebuilding one, on a connection.

Each function runs on a connection handed out by ``Database.run`` (which owns
retries and error translation); only ``store`` opens a transaction (a save and its
retention policy commit together). The statements are ``_sql``'s.

**Storage: forward deltas above full rows, written once.** A state of 2 KiB or
more is stored as a *forward* delta (``encoding`` 2, ``forkpoint._delta``'s
``[p, s, "middle"]`` text) against the thread's previous step, and a new full
row (``encoding`` 0) starts whenever the deltas above the last full row would
exceed half the new state or ``FORWARD_RUN`` rows. So a save inserts one row and
rewrites none: on PostgreSQL a rewritten row is a dead tuple (a dead TOAST value
for a large state) whose space a plain VACUUM makes reusable but seldom gives
back, which made a growing state cost about as much disk as storing every step
in full. Loading the latest step reads its full row and at most half a state of
deltas; reading an older step reads the same kind of chain. Rows written by
earlier versions (reverse deltas, ``encoding`` 1, below a full row) stay
readable as they are: a thread's rows are runs of ``1* 0 2*``.

Removing a prefix (``prune``, ``keep_last``) whose first kept row is a forward
delta first stores that row in full (``drop_below``); ``fork`` copies the rows
below the fork point verbatim and writes the fork point in full.
"""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg

from .._delta import DELTA_MIN_CHARS, MAX_RUN, apply_deltas, make_delta
from ..codec import EncodedCheckpoint
from ..errors import SerializationError, StepConflict
from ._sql import SQL, N

__all__ = [
    "FORWARD_RUN",
    "apply_one",
    "chain_rows",
    "drop_below",
    "encoded_run",
    "full_row",
    "keep_last",
    "newest_first",
    "previous",
    "replace_states",
    "save",
    "store",
    "stored",
]

FORWARD_RUN = MAX_RUN
"""At most this many forward deltas above a full row: bounds the rows a load reads.

Measured on a state growing 400 B per step for 1,000 steps: a bound of 64 rows
costs 3.5 times the final state in live data, 128 rows 2.6 times, 256 rows 2.1
times; reading the latest of 256 deltas and applying them takes ~1.5 ms on top
of the ~400 KB full row.
"""

_SAVE_ATTEMPTS = 16  # a large-state save that keeps losing its race to other writers
_CHAIN_ROWS = MAX_RUN + 2  # more rows than any chain forkpoint writes


def forward_delta(state: str, previous: str | None, run: int, chars: int) -> str | None:
    """The forward delta storing ``state`` after ``previous``, or None to store it in full.

    ``run`` and ``chars`` are the count and total length of the deltas already
    above the last full row: a new full row starts when they would pass
    ``FORWARD_RUN`` or half of ``state``.
    """
    if previous is None or run >= FORWARD_RUN or len(state) < DELTA_MIN_CHARS:
        return None
    delta = make_delta(state, previous)
    if delta is None or 2 * (chars + len(delta)) > len(state):
        return None
    return delta


def encoded_run(rows: list[EncodedCheckpoint]) -> list[tuple[EncodedCheckpoint, int]]:
    """Rows of one thread (oldest first, full states) as saves one by one would store them."""
    out: list[tuple[EncodedCheckpoint, int]] = []
    previous: str | None = None
    run = chars = 0
    for row in rows:
        delta = forward_delta(row.state, previous, run, chars)
        if delta is None:
            out.append((row, 0))
            run = chars = 0
        else:
            out.append((row._replace(state=delta), 2))
            run, chars = run + 1, chars + len(delta)
        previous = row.state
    return out


def stored(record: asyncpg.Record) -> tuple[EncodedCheckpoint, int]:
    """A row read with ``SELECT <EncodedCheckpoint's fields>, encoding``: (row, encoding)."""
    values = tuple(record)
    return EncodedCheckpoint(*values[:N]), values[N]


def _damaged(exc: ValueError, thread_id: str, step: int) -> SerializationError:
    return SerializationError(
        f"stored state cannot be rebuilt: {exc}", thread_id=thread_id, step=step
    )


async def _chain(
    conn: asyncpg.Connection, thread_id: str, step: int
) -> list[EncodedCheckpoint] | None:
    """The rows rebuilding the state at ``step``, ready for ``apply_deltas``; None: no such row.

    The full row comes first and the row at ``step`` last: a forward delta's
    older rows upwards, or a reverse delta's newer rows downwards.
    """
    found = [stored(r) for r in await conn.fetch(SQL.CHAIN, thread_id, step, _CHAIN_ROWS)]
    if not found or found[0][0].step != step:
        return None
    encoding = found[0][1]
    if encoding == 0:
        return [found[0][0]]
    try:
        if encoding not in (1, 2):
            raise ValueError(f"unknown storage encoding {encoding!r}")
        if len(found) >= _CHAIN_ROWS:
            raise ValueError("the delta chain is longer than forkpoint writes")
        others = found[1:] if encoding == 2 else found[:0:-1]
        chain = [*others, found[0]]
        if len(chain) < 2 or chain[0][1] != 0:
            raise ValueError("the delta chain has no full state to start from")
        if any(e != encoding for _, e in chain[1:]):
            raise ValueError("the delta chain holds an unknown encoding")
    except ValueError as exc:
        raise _damaged(exc, thread_id, step) from exc
    return [row for row, _ in chain]


def _rebuilt(chain: list[EncodedCheckpoint], thread_id: str) -> EncodedCheckpoint:
    """The last row of a chain from ``_chain`` with its full state."""
    if len(chain) == 1:
        return chain[0]
    try:
        state = apply_deltas(chain[0].state, [r.state for r in chain[1:]])
    except ValueError as exc:
        raise _damaged(exc, thread_id, chain[-1].step) from exc
    return chain[-1]._replace(state=state)


async def full_row(conn: asyncpg.Connection, thread_id: str, step: int) -> EncodedCheckpoint | None:
    """The checkpoint at ``step`` with its full state, rebuilding a delta row (one statement)."""
    chain = await _chain(conn, thread_id, step)
    return None if chain is None else _rebuilt(chain, thread_id)


async def chain_rows(
    conn: asyncpg.Connection, thread_id: str, step: int
) -> list[EncodedCheckpoint]:
    """The stored rows the state at ``step`` is rebuilt from (``_chain``); empty if no row."""
    return await _chain(conn, thread_id, step) or []


def newest_first(chain: list[EncodedCheckpoint], thread_id: str) -> Iterator[EncodedCheckpoint]:
    """The rows of a chain from ``chain_rows`` with full states: its last row's, then down.

    For a forward delta that is every row of its run, newest first. Each state
    is rebuilt once, upwards from the full row; on the way up only the small
    delta back to each state is kept (or, where none pays, the state), so the
    run never holds more than two whole states at once. A reverse-delta or
    full chain gives its one row. A damaged row raises before anything is
    given, naming the chain's last step.
    """
    if len(chain) == 1 or chain[-1].step < chain[0].step:
        yield _rebuilt(chain, thread_id)
        return
    back: list[str | None] = []  # back[i]: rebuilds state i of the run from state i + 1
    kept: dict[int, str] = {}  # state i, where no delta back to it pays
    state = chain[0].state
    try:
        for i, row in enumerate(chain[1:]):
            newer = apply_deltas(state, [row.state])
            back.append(make_delta(state, newer))
            if back[-1] is None:
                kept[i] = state
            state = newer
    except ValueError as exc:
        raise _damaged(exc, thread_id, chain[-1].step) from exc
    for i in range(len(chain) - 1, -1, -1):
        yield chain[i]._replace(state=state)
        if i:
            delta = back[i - 1]
            state = kept[i - 1] if delta is None else apply_deltas(state, [delta])


def apply_one(newer: str, row: EncodedCheckpoint, encoding: int) -> str:
    """The full state of a reverse delta row, from the full state of the row just above it."""
    try:
        if encoding != 1:
            raise ValueError(f"unknown storage encoding {encoding!r}")
        return apply_deltas(newer, [row.state])
    except ValueError as exc:
        raise _damaged(exc, row.thread_id, row.step) from exc


async def _refuse_or_retry(conn: asyncpg.Connection, row: EncodedCheckpoint) -> bool:
    """The step is not after the latest: False for an identical retry, else StepConflict.

    A stored row that cannot be rebuilt is not identical to anything.
    """
    try:
        if await full_row(conn, row.thread_id, row.step) == row:
            return False
    except SerializationError:
        pass
    latest = await conn.fetchval(SQL.LATEST_STEP, row.thread_id)
    raise StepConflict(
        f"step {row.step} is not after the thread's latest step {latest}",
        thread_id=row.thread_id,
        step=row.step,
    )


def previous(top: list[asyncpg.Record]) -> tuple[str | None, int, int]:
    """From ``SQL.TOP``'s rows of one thread: its latest state, and its deltas' count and length.

    None when the latest is not a full row with forward deltas above it
    (nothing to store a delta against: the new row is stored in full).
    """
    rows = sorted((r[3], r[4], r[5]) for r in top if r[3] is not None)
    if not rows or rows[0][1] != 0 or rows[-1][0] != top[0][1]:
        return None, 0, 0
    deltas = [state for _, encoding, state in rows[1:]]
    if any(encoding != 2 for _, encoding, _ in rows[1:]):
        return None, 0, 0
    try:
        latest = apply_deltas(rows[0][2], deltas)
    except ValueError:
        return None, 0, 0  # a damaged row: the new one is stored in full, whole
    return latest, len(deltas), sum(map(len, deltas))


async def save(
    conn: asyncpg.Connection, row: EncodedCheckpoint, meta: str | None, now: str
) -> bool:
    """Store ``row``: True stored, False an identical retry; StepConflict writing nothing."""
    params = (*row, now, meta)
    if len(row.state) < DELTA_MIN_CHARS:  # stored in full: one statement
        if await conn.fetchval(SQL.SAVE, *params) is not None:
            return True
        return await _refuse_or_retry(conn, row)
    for _ in range(_SAVE_ATTEMPTS):
        top = await conn.fetch(SQL.TOP, [row.thread_id], FORWARD_RUN)
        delta = None
        if top:
            latest, version = top[0][1], top[0][2]
            if row.step <= latest:
                return await _refuse_or_retry(conn, row)
            delta = forward_delta(row.state, *previous(top))
        if delta is None:
            if await conn.fetchval(SQL.SAVE, *params) is not None:
                return True
            if not top:
                return await _refuse_or_retry(conn, row)  # a racing first save won
        else:
            forward = (*row._replace(state=delta), now, meta, latest, version)
            if await conn.fetchval(SQL.SAVE_FORWARD, *forward) is not None:
                return True
        # Another writer moved the thread between the read and the write: read again.
    return await _refuse_or_retry(conn, row)


async def store(
    conn: asyncpg.Connection, row: EncodedCheckpoint, meta: str | None, now: str, keep: int | None
) -> bool:
    """One save on its own: ``save``, and with a retention policy ``keep_last``, in one transaction."""
    if keep is None:
        return await save(conn, row, meta, now)
    async with conn.transaction():
        if not await save(conn, row, meta, now):
            return False
        await keep_last(conn, row.thread_id, keep)
        return True


async def drop_below(conn: asyncpg.Connection, thread_id: str, cut: int, encoding: int) -> int:
    """Delete the thread's rows below step ``cut``; how many. Runs in the caller's transaction.

    The row at ``cut`` (of storage ``encoding``) is kept: a forward delta is
    rebuilt and stored in full first, since its full row is among those going.
    """
    healed = None
    if encoding == 2:
        try:
            healed = await full_row(conn, thread_id, cut)
        except SerializationError:
            healed = None  # already unreadable: it stays as it is
    status = await conn.execute(SQL.DELETE_BELOW, thread_id, cut)
    count = int(status.rsplit(" ", 1)[1])
    if count:
        if healed is not None:
            await conn.execute(SQL.STORE_FULL, thread_id, cut, healed.state)
        await conn.execute(SQL.COUNT_DOWN, thread_id, count)
    return count


async def keep_last(conn: asyncpg.Connection, thread_id: str, keep: int) -> None:
    """The retention policy, after a save in the caller's transaction: the newest ``keep`` stay."""
    oldest = await conn.fetchrow(SQL.KEEP_LAST, thread_id, keep - 1)
    if oldest is not None and oldest[1] == 2:
        await drop_below(conn, thread_id, oldest[0], 2)


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
    The thread record keeps its times; its row version changes, so a save that
    read the old states meanwhile starts over.
    """
    shape = await conn.fetchrow(SQL.THREAD_SHAPE, thread_id)
    if shape is None or tuple(shape) != (latest_step, count):
        return False
    await conn.execute(SQL.DELETE_ROWS, thread_id)
    await conn.executemany(SQL.INSERT_STORED, [(*r, e) for r, e in encoded_run(rows)])
    await conn.execute(SQL.TOUCH_THREAD, thread_id)
    return True
