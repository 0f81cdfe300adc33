"""The LangGraph saver's rows: named jobs ``(sqlite3.Connection, ...) -> result``.

Why its own tables (``lg_checkpoints``, ``lg_blobs``, ``lg_list_items``,
``lg_writes``, revision 0004) instead of forkpoint's ``(thread_id, step)`` rows: in a LangGraph thread
``metadata.step`` repeats (an ``update`` and a ``loop`` checkpoint share a step),
branches made with ``update_state`` on an old checkpoint share a parent, every
subgraph call opens a new checkpoint namespace, checkpoints are addressed by id
and may be replaced by id, and pending writes belong to a checkpoint that may
not be committed yet. None of that is a linear list of steps.

* ``lg_checkpoints`` — one row per ``(thread_id, checkpoint_ns,
  checkpoint_id)``. ``seq`` is an insertion counter assigned inside the write
  transaction; it orders a thread's checkpoints ("latest", ``list``,
  ``before``), so order never depends on the clock that made the uuid6 ids.
  Replacing an id keeps its ``seq``. ``checkpoint`` is the checkpoint without its
  channel values; ``channels`` maps each channel to its ``lg_blobs`` key.
* ``lg_blobs`` — one channel value per ``(thread_id, checkpoint_ns, channel,
  key)``; the key is the channel's version, so a checkpoint whose channel did not
  change refers to the stored value instead of storing it again. If the same
  version arrives with a different value (a branch that reused a version), the
  new value gets the key ``<version>@<checkpoint id>`` (then ``#2``, ``#3``…: a
  stored value is never overwritten with another, since a checkpoint put again
  under its id may have children that refer to the values it had).
  ``encoding`` 0: ``value`` is the value's JSON; 1: ``value`` is ``{"list": id,
  "len": n}``, a list value made of the first ``n`` items of ``lg_list_items``
  list ``id``.
* ``lg_list_items`` — list values (a conversation's messages) element by
  element, each element's JSON in its own row. A version that extends the last
  stored list appends only its new elements, so a conversation stores each
  message once however many checkpoints hold it; a version that does not (a
  branch, an edit, a list that was trimmed meanwhile) starts a list of its own,
  under a new random id. What an id holds never changes: a list is only
  appended to, a deletion that leaves it longer than any value still needs
  cuts it and gives the rest a new id, and a copied thread's lists take new
  ids (the copy may grow apart from its source). So a list never has a gap, and a
  saver that remembers a list may append to it once it checks where the list
  ends: no other list ever ends there under that id. Reading one is one
  ordered range query, no chain to follow; a listing reads each list's
  elements once for all its checkpoints (``Page.items``) and a later page only
  the elements the caller does not have yet.
* ``lg_writes`` — pending writes by ``(…, checkpoint_id, task_id, idx)``, with no
  foreign key: a write may arrive before its checkpoint. A negative ``idx``
  (errors, interrupts, resume values) replaces; others are kept if present.

Every job runs on forkpoint's SQLite engine (``forkpoint.sqlite._engine``): a
write job inside the engine's ``BEGIN IMMEDIATE … COMMIT`` (shared with other
writes by group commit; a job refuses only before it writes), a read job on the
reader connection. Copy and prune are one ``INSERT … SELECT`` / ``DELETE`` per
table in that one transaction; deletions then drop the values and list items no
remaining checkpoint uses. All SQL binds its values; nothing from the
caller is ever spliced into SQL text.

This module runs past 600 lines because it is the one place that knows these
tables: every job that writes a row and every job that reads it back sit side
by side, so the key naming (``<version>@<checkpoint id>``), the list layout and
what a deletion must collect stay in step.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from ..errors import CheckpointNotFound, InvalidInput, ThreadExists

__all__ = [
    "BlobIn",
    "ListKey",
    "ListRef",
    "Page",
    "PutRequest",
    "StoredCheckpoint",
    "copy_thread",
    "delete_for_runs",
    "delete_inactive",
    "delete_thread",
    "get_checkpoint",
    "list_checkpoints",
    "prune",
    "put_checkpoint",
    "put_writes",
    "read_checkpoint",
    "read_delta_history",
]


VALUE = 0
"""``lg_blobs.encoding``: ``value`` is the stored value."""
LIST = 1
"""``lg_blobs.encoding``: ``value`` is ``{"list": id, "len": n}``, the first n ``lg_list_items``."""


class BlobIn(NamedTuple):
    """One channel value of a checkpoint being stored.

    ``version`` is the channel's version as JSON text (``None``: the channel has
    no version). ``value`` is the encoded text, or a function that encodes it,
    called only if no stored value for that version can be reused. ``items``
    (a list value's element texts) asks for list storage, appending to
    ``base`` — ``(list_id, length)`` of a list this value extends — when that
    list still ends there.
    """

    channel: str
    version: str | None
    value: str | Callable[[], str]
    items: list[str] | None = None
    base: tuple[str, int] | None = None


class PutRequest(NamedTuple):
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    run_id: str | None
    created_at: str
    metadata: str
    checkpoint: str
    blobs: Sequence[BlobIn]
    keep_last: int | None = None  # then keep only the namespace's newest N checkpoints


ListKey = tuple[str, str, str, str]
"""One stored list: ``(thread_id, checkpoint_ns, channel, list_id)``."""


class ListRef(NamedTuple):
    """A value stored as a list: the first ``length`` elements of list ``key``."""

    key: ListKey
    length: int


class StoredCheckpoint(NamedTuple):
    """A checkpoint row with everything needed to rebuild its tuple (still encoded).

    ``values`` holds each channel's JSON text (``None``: the value this row
    refers to is missing), except the channels in ``lists``, stored element by
    element, whose elements come with the :class:`Page`.
    """

    seq: int
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    metadata: str
    checkpoint: str
    values: dict[str, str | None]
    writes: list[tuple[str, str, str, str, int]]  # task_id, channel, value, task_path, idx
    lists: dict[str, ListRef]


class Page(NamedTuple):
    """Checkpoint rows and the list elements they need that the caller did not have yet.

    ``items[key]`` is ``(first index read, element texts from there on)``; a
    list that has fewer elements than a row needs is simply short.
    """

    rows: list[StoredCheckpoint]
    items: dict[ListKey, tuple[int, list[str]]]


# --- writing -------------------------------------------------------------------------------


def put_checkpoint(conn: sqlite3.Connection, req: PutRequest) -> dict[str, tuple[str, int]]:
    """Store (or replace, keeping its place in the order) one checkpoint and its new values.

    Every encoding happens before the first write, so a value that cannot be
    encoded refuses the job with nothing written. Returns ``{channel: (list_id,
    length)}`` for the values stored as lists.

    Three statements in the common case, whatever the number of channels: the
    parent's keys, the new values (one ``INSERT OR IGNORE``, under the key of
    their version), the checkpoint row. Each statement costs more than its
    SQL: the writer gives the interpreter lock to the event loop's thread and
    waits to get it back. A channel that did not change refers to the
    parent's value, which exists while the parent refers to it (deletions
    collect only values no checkpoint refers to). Only when the insert finds
    a version already stored (a branch that reused it) are the values read
    back, and a different value gets a key of its own (``_key_for``). A
    checkpoint put again under its id is updated in place, and the values
    only its old self used are collected.
    """
    where = (req.thread_id, req.checkpoint_ns)
    parent_keys = _parent_keys(conn, req)
    keys: dict[str, str] = {}
    replaced: list[tuple[str, str, str, str, int, str]] = []
    fresh: list[tuple[str, str, str, bool]] = []  # channel, version, text, may reuse unread
    appends: list[tuple[str, str, int, list[str]]] = []  # channel, list_id, start, items
    lists: dict[str, tuple[str, int]] = {}
    for blob in req.blobs:
        if blob.version is None:
            keys[blob.channel] = "@" + req.checkpoint_id
            replaced.append((*where, blob.channel, keys[blob.channel], VALUE, _text(blob)))
        elif blob.items is not None:
            key, list_id, start = _plan_list(
                conn, req, blob.channel, blob.version, blob.items, blob.base
            )
            ref = json.dumps({"list": list_id, "len": len(blob.items)}, separators=(",", ":"))
            keys[blob.channel] = key
            replaced.append((*where, blob.channel, key, LIST, ref))
            appends.append((blob.channel, list_id, start, blob.items[start:]))
            lists[blob.channel] = (list_id, len(blob.items))
        elif callable(blob.value) and _of_version(parent_keys.get(blob.channel), blob.version):
            keys[blob.channel] = parent_keys[blob.channel]  # unchanged: the parent's value
        else:
            keys[blob.channel] = blob.version  # unless a branch took it for another value
            fresh.append((blob.channel, blob.version, _text(blob), callable(blob.value)))
    for channel, list_id, start, items in appends:
        conn.executemany(
            "INSERT INTO lg_list_items (thread_id, checkpoint_ns, channel, list_id, idx, value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(*where, channel, list_id, start + offset, item) for offset, item in enumerate(items)],
        )
    keys.update(_insert_fresh(conn, req, fresh, replaced))
    if replaced:
        conn.executemany(
            "INSERT OR REPLACE INTO lg_blobs (thread_id, checkpoint_ns, channel, key, encoding, "
            "value) VALUES (?, ?, ?, ?, ?, ?)",
            replaced,
        )
    row = (
        req.parent_checkpoint_id,
        req.run_id,
        req.created_at,
        req.metadata,
        json.dumps(keys, ensure_ascii=False, separators=(",", ":")),
        req.checkpoint,
        req.thread_id,
        req.checkpoint_ns,
        req.checkpoint_id,
    )
    before = conn.total_changes
    conn.execute(
        "INSERT INTO lg_checkpoints (parent_checkpoint_id, run_id, created_at, metadata, "
        "channels, checkpoint, thread_id, checkpoint_ns, checkpoint_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO NOTHING",
        row,
    )
    again = conn.total_changes == before  # put again under its id: replaced in its place
    if again:
        conn.execute(
            "UPDATE lg_checkpoints SET parent_checkpoint_id = ?, run_id = ?, created_at = ?, "
            "metadata = ?, channels = ?, checkpoint = ? "
            "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            row,
        )
    dropped = req.keep_last is not None and _drop_oldest(
        conn, req.thread_id, req.checkpoint_ns, req.keep_last
    )
    if dropped or again:  # the values and list elements only what went away used
        _collect_blobs(conn, [req.thread_id])
    return lists


def _drop_oldest(conn: sqlite3.Connection, thread_id: str, checkpoint_ns: str, keep: int) -> bool:
    """Delete the namespace's checkpoints older than its newest ``keep`` (by insertion order)
    and their writes; whether there were any (then the caller collects their values)."""
    row = conn.execute(
        "SELECT seq FROM lg_checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
        "ORDER BY seq DESC LIMIT 1 OFFSET ?",
        (thread_id, checkpoint_ns, keep),
    ).fetchone()
    if row is None:  # no more than ``keep`` checkpoints
        return False
    where = (thread_id, checkpoint_ns, int(row[0]))
    conn.execute(
        "DELETE FROM lg_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) IN ("
        "SELECT thread_id, checkpoint_ns, checkpoint_id FROM lg_checkpoints "
        "WHERE thread_id = ? AND checkpoint_ns = ? AND seq <= ?)",
        where,
    )
    conn.execute(
        "DELETE FROM lg_checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND seq <= ?", where
    )
    return True


_ROWS_PER_INSERT = 64  # rows per INSERT statement (SQLite caps the bound parameters)


def _parent_keys(conn: sqlite3.Connection, req: PutRequest) -> dict[str, str]:
    """The parent checkpoint's ``{channel: key}`` (empty without a stored parent)."""
    if req.parent_checkpoint_id is None:
        return {}
    row = conn.execute(
        "SELECT channels FROM lg_checkpoints WHERE thread_id = ? AND checkpoint_ns = ? "
        "AND checkpoint_id = ?",
        (req.thread_id, req.checkpoint_ns, req.parent_checkpoint_id),
    ).fetchone()
    return {} if row is None else dict(json.loads(row[0]))


def _insert_fresh(
    conn: sqlite3.Connection,
    req: PutRequest,
    fresh: list[tuple[str, str, str, bool]],
    replaced: list[tuple[str, str, str, str, int, str]],
) -> dict[str, str]:
    """Insert new values under their version's key; the channels that need another key.

    When a version is stored already: an unchanged channel's (``may reuse
    unread``) is taken as it is, as is an equal value; a different value goes
    to ``replaced`` under ``<version>@<checkpoint id>`` or the next free key.
    """
    if not fresh:
        return {}
    where = (req.thread_id, req.checkpoint_ns)
    before = conn.total_changes
    head = (
        "INSERT OR IGNORE INTO lg_blobs (thread_id, checkpoint_ns, channel, key, encoding, value)"
    )
    for first in range(0, len(fresh), _ROWS_PER_INSERT):
        chunk = fresh[first : first + _ROWS_PER_INSERT]
        rows = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(chunk))
        conn.execute(
            f"{head} VALUES {rows}",
            [value for ch, ver, text, _ in chunk for value in (*where, ch, ver, VALUE, text)],
        )
    keys: dict[str, str] = {}
    if conn.total_changes - before == len(fresh):
        return keys  # every version was new
    for channel, version, text, unchanged in fresh:
        if not unchanged and _blob_text(conn, (*where, channel), version) != text:
            key, new = _key_for(conn, (*where, channel), f"{version}@{req.checkpoint_id}", text)
            keys[channel] = key
            if new:
                replaced.append((*where, channel, key, VALUE, text))
    return keys


def _key_for(
    conn: sqlite3.Connection, where: tuple[str, str, str], key: str, text: str | None
) -> tuple[str, bool]:
    """``(key, whether to insert)``: ``key``, or ``<key>#2``, ``#3``… until one is free or holds
    ``text`` already.

    A stored value is never overwritten with another: a checkpoint put again
    under its id may have children that refer to the values it had.
    """
    candidate, n = key, 1
    while (stored := _blob_text(conn, where, candidate)) is not None:
        if stored == text:
            return candidate, False
        n += 1
        candidate = f"{key}#{n}"
    return candidate, True


def _plan_list(
    conn: sqlite3.Connection,
    req: PutRequest,
    channel: str,
    version: str,
    items: list[str],
    base: tuple[str, int] | None,
) -> tuple[str, str, int]:
    """``(blob key, list_id, first index to insert)``: append to ``base`` if it still ends there."""
    key = version
    if _blob_text(conn, (req.thread_id, req.checkpoint_ns, channel), version) is not None:
        # this version is taken (a branch reused it): a key of its own, never another's
        key, _ = _key_for(
            conn,
            (req.thread_id, req.checkpoint_ns, channel),
            f"{version}@{req.checkpoint_id}",
            None,
        )
    if base is not None and 0 < base[1] <= len(items):
        # the list still ends where the caller saw it end, with the element it saw last
        # (what an id holds never changes: it only grows, a cut takes a new id)
        list_id, length = base
        where = (req.thread_id, req.checkpoint_ns, channel, list_id)
        top, last = conn.execute(
            "SELECT max(idx), (SELECT value FROM lg_list_items WHERE thread_id = ?1 "
            "AND checkpoint_ns = ?2 AND channel = ?3 AND list_id = ?4 AND idx = ?5) "
            "FROM lg_list_items WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel = ?3 "
            "AND list_id = ?4",
            (*where, length - 1),
        ).fetchone()
        if top == length - 1 and last == items[length - 1]:
            return key, list_id, length
    return key, _new_list_id(), 0


def _new_list_id() -> str:
    """A new list's id: random, so no list ever has an id another list had.

    A list's elements never change under its id (a list is only appended to;
    a cut gives what is left a new id, ``_collect_blobs``), which is what lets
    a saver append to the list it remembers after checking only where it ends:
    an id used again (a thread deleted and written anew, a version reused)
    could end the same way and hold other elements.
    """
    return "~" + secrets.token_hex(8)


def _text(blob: BlobIn) -> str:
    return blob.value() if callable(blob.value) else blob.value


def _of_version(key: str | None, version: str) -> bool:
    """Whether ``key`` stores ``version``: the version's JSON text, or it and ``@…`` after it
    (a version's text may itself hold ``@``, but a JSON text never goes on after its end)."""
    return key is not None and (key == version or key.startswith(version + "@"))


def _blob_text(conn: sqlite3.Connection, where: tuple[str, str, str], key: str) -> str | None:
    """The stored value's text (None: no row); a list's reference never equals a value's JSON."""
    row = conn.execute(
        "SELECT value, encoding FROM lg_blobs WHERE thread_id = ? AND checkpoint_ns = ? "
        "AND channel = ? AND key = ?",
        (*where, key),
    ).fetchone()
    if row is None:
        return None
    return str(row[0]) if row[1] == VALUE else "\0list " + str(row[0])


def put_writes(
    conn: sqlite3.Connection,
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str,
    task_id: str,
    task_path: str,
    rows: Sequence[tuple[int, str, str]],
) -> None:
    """Store a task's writes: ``(idx, channel, encoded value)``; negative idx replaces."""
    where = (thread_id, checkpoint_ns, checkpoint_id, task_id)
    for replace in (True, False):
        batch = [
            (*where, idx, task_path, ch, text) for idx, ch, text in rows if (idx < 0) == replace
        ]
        if batch:
            verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
            conn.executemany(
                f"{verb} INTO lg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
                "task_path, channel, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                batch,
            )


def delete_thread(conn: sqlite3.Connection, thread_id: str) -> None:
    """Remove every checkpoint, value and write of a thread (all namespaces)."""
    for table in ("lg_checkpoints", "lg_blobs", "lg_list_items", "lg_writes"):
        conn.execute(f"DELETE FROM {table} WHERE thread_id = ?", (thread_id,))  # noqa: S608 - fixed table names


def delete_inactive(conn: sqlite3.Connection, cutoff: str) -> list[str]:
    """Remove the threads whose newest checkpoint was written before ``cutoff``; their ids."""
    stale = [
        row[0]
        for row in conn.execute(
            "SELECT thread_id FROM lg_checkpoints GROUP BY thread_id "
            "HAVING max(created_at) < ? ORDER BY thread_id",
            (cutoff,),
        )
    ]
    for thread_id in stale:
        delete_thread(conn, thread_id)
    return stale


def delete_for_runs(conn: sqlite3.Connection, run_ids: Sequence[str]) -> None:
    """Remove the checkpoints made by these runs, their writes, and values no longer used."""
    runs = json.dumps(list(run_ids))
    threads = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT thread_id FROM lg_checkpoints "
            "WHERE run_id IN (SELECT value FROM json_each(?))",
            (runs,),
        )
    ]
    conn.execute(
        "DELETE FROM lg_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) IN ("
        "SELECT thread_id, checkpoint_ns, checkpoint_id FROM lg_checkpoints "
        "WHERE run_id IN (SELECT value FROM json_each(?)))",
        (runs,),
    )
    conn.execute(
        "DELETE FROM lg_checkpoints WHERE run_id IN (SELECT value FROM json_each(?))", (runs,)
    )
    _collect_blobs(conn, threads)


def copy_thread(conn: sqlite3.Connection, source: str, target: str) -> None:
    """Copy a thread's checkpoints (in order), values and writes to a new thread id."""
    if source == target:
        raise InvalidInput("copy_thread needs two different thread ids", thread_id=source)
    if (
        conn.execute("SELECT 1 FROM lg_checkpoints WHERE thread_id = ?", (source,)).fetchone()
        is None
    ):
        raise CheckpointNotFound("no checkpoints to copy", thread_id=source)
    taken = conn.execute(
        "SELECT 1 FROM lg_checkpoints WHERE thread_id = ? UNION ALL "
        "SELECT 1 FROM lg_writes WHERE thread_id = ? LIMIT 1",
        (target, target),
    ).fetchone()
    if taken is not None:
        raise ThreadExists("the target thread already has checkpoints", thread_id=target)
    conn.execute(
        "INSERT INTO lg_checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
        "parent_checkpoint_id, run_id, created_at, metadata, channels, checkpoint) "
        "SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, created_at, "
        "metadata, channels, checkpoint FROM lg_checkpoints WHERE thread_id = ? ORDER BY seq",
        (target, source),
    )
    # each copied list takes a new id: the copy and its source may extend it differently, and
    # a saver that remembers the copy's list must never find the source's under that id
    ids = json.dumps(
        {
            row[0]: _new_list_id()
            for row in conn.execute(
                "SELECT DISTINCT list_id FROM lg_list_items WHERE thread_id = ?", (source,)
            )
        }
    )
    conn.execute(
        "INSERT INTO lg_blobs (thread_id, checkpoint_ns, channel, key, encoding, value) "
        "SELECT ?1, checkpoint_ns, channel, key, encoding, CASE WHEN encoding = 1 THEN "
        "json_set(value, '$.list', coalesce((SELECT m.value FROM json_each(?3) m "
        "WHERE m.key = json_extract(lg_blobs.value, '$.list')), json_extract(value, '$.list'))) "
        "ELSE value END FROM lg_blobs WHERE thread_id = ?2",
        (target, source, ids),
    )
    conn.execute(
        "INSERT INTO lg_list_items (thread_id, checkpoint_ns, channel, list_id, idx, value) "
        "SELECT ?1, i.checkpoint_ns, i.channel, m.value, i.idx, i.value "
        "FROM lg_list_items i JOIN json_each(?3) m ON m.key = i.list_id WHERE i.thread_id = ?2",
        (target, source, ids),
    )
    conn.execute(
        "INSERT INTO lg_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
        "task_path, channel, value) SELECT ?, checkpoint_ns, checkpoint_id, task_id, idx, "
        "task_path, channel, value FROM lg_writes WHERE thread_id = ?",
        (target, source),
    )


def prune(conn: sqlite3.Connection, thread_ids: Sequence[str], strategy: str) -> None:
    """``keep_latest``: keep each namespace's latest checkpoint (and its writes); ``delete``: all."""
    if strategy == "delete":
        for thread_id in thread_ids:
            delete_thread(conn, thread_id)
        return
    if strategy != "keep_latest":
        raise InvalidInput(f"prune strategy must be 'keep_latest' or 'delete', not {strategy!r}")
    threads = json.dumps(list(thread_ids))
    conn.execute(
        "DELETE FROM lg_writes WHERE thread_id IN (SELECT value FROM json_each(?1)) "
        "AND (thread_id, checkpoint_ns, checkpoint_id) NOT IN ("
        "SELECT thread_id, checkpoint_ns, checkpoint_id FROM lg_checkpoints WHERE seq IN ("
        "SELECT max(seq) FROM lg_checkpoints WHERE thread_id IN (SELECT value FROM json_each(?1)) "
        "GROUP BY thread_id, checkpoint_ns))",
        (threads,),
    )
    conn.execute(
        "DELETE FROM lg_checkpoints WHERE thread_id IN (SELECT value FROM json_each(?1)) "
        "AND seq NOT IN ("
        "SELECT max(seq) FROM lg_checkpoints WHERE thread_id IN (SELECT value FROM json_each(?1)) "
        "GROUP BY thread_id, checkpoint_ns)",
        (threads,),
    )
    _collect_blobs(conn, list(thread_ids))


def _collect_blobs(conn: sqlite3.Connection, thread_ids: Sequence[str]) -> None:
    """Delete the values of these threads that no remaining checkpoint refers to."""
    if not thread_ids:
        return
    threads = json.dumps(list(thread_ids))
    conn.execute(
        "DELETE FROM lg_blobs WHERE thread_id IN (SELECT value FROM json_each(?1)) "
        "AND (thread_id, checkpoint_ns, channel, key) NOT IN ("
        "SELECT c.thread_id, c.checkpoint_ns, j.key, j.value "
        "FROM lg_checkpoints c, json_each(c.channels) j "
        "WHERE c.thread_id IN (SELECT value FROM json_each(?1)))",
        (threads,),
    )
    # the lists holding elements past the longest value that still refers to them (all of a
    # list no value refers to); in the common case (the oldest checkpoints dropped) none
    over = conn.execute(
        "WITH keep (thread_id, checkpoint_ns, channel, list_id, n) AS ("
        "SELECT thread_id, checkpoint_ns, channel, json_extract(value, '$.list'), "
        "max(json_extract(value, '$.len')) FROM lg_blobs "
        "WHERE encoding = 1 AND thread_id IN (SELECT value FROM json_each(?1)) "
        "GROUP BY 1, 2, 3, 4) "
        "SELECT i.thread_id, i.checkpoint_ns, i.channel, i.list_id, coalesce(k.n, 0) "
        "FROM lg_list_items i LEFT JOIN keep k ON k.thread_id = i.thread_id "
        "AND k.checkpoint_ns = i.checkpoint_ns AND k.channel = i.channel "
        "AND k.list_id = i.list_id "
        "WHERE i.thread_id IN (SELECT value FROM json_each(?1)) AND i.idx >= coalesce(k.n, 0) "
        "GROUP BY 1, 2, 3, 4",
        (threads,),
    ).fetchall()
    for thread_id, checkpoint_ns, channel, list_id, n in over:
        where = (thread_id, checkpoint_ns, channel, list_id)
        conn.execute(
            "DELETE FROM lg_list_items WHERE thread_id = ? AND checkpoint_ns = ? AND channel = ? "
            "AND list_id = ? AND idx >= ?",
            (*where, n),
        )
        if n:
            # cut: what is left takes a new id, in its elements and in the values that refer
            # to it, or a saver that remembers it longer could append to it once it grew back
            renamed = (_new_list_id(), *where)
            conn.execute(
                "UPDATE lg_list_items SET list_id = ?1 WHERE thread_id = ?2 "
                "AND checkpoint_ns = ?3 AND channel = ?4 AND list_id = ?5",
                renamed,
            )
            conn.execute(
                "UPDATE lg_blobs SET value = json_object('list', ?1, 'len', json_extract(value, "
                "'$.len')) WHERE thread_id = ?2 AND checkpoint_ns = ?3 AND channel = ?4 "
                "AND encoding = 1 AND json_extract(value, '$.list') = ?5",
                renamed,
            )


# --- reading -------------------------------------------------------------------------------

_COLUMNS = (
    "seq, thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, metadata, checkpoint"
)


def get_checkpoint(
    conn: sqlite3.Connection, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
) -> StoredCheckpoint | None:
    """One checkpoint by id (or the latest), every value as one JSON text, lists included."""
    page = read_checkpoint(conn, thread_id, checkpoint_ns, checkpoint_id)
    if not page.rows:
        return None
    row = page.rows[0]
    values = dict(row.values)
    for channel, ref in row.lists.items():
        texts = page.items.get(ref.key, (0, []))[1]
        values[channel] = (
            "[" + ",".join(texts[: ref.length]) + "]" if len(texts) >= ref.length else None
        )
    return row._replace(values=values, lists={})


def read_checkpoint(
    conn: sqlite3.Connection, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
) -> Page:
    """One checkpoint by id, or the namespace's latest (highest ``seq``) when id is None."""
    found = _find(conn, thread_id, checkpoint_ns, checkpoint_id)
    return Page([], {}) if found is None else _load(conn, [found[0]], {})


def _find(
    conn: sqlite3.Connection, thread_id: str, checkpoint_ns: str, checkpoint_id: str | None
) -> tuple[int, str | None] | None:
    """``(seq, parent id)`` of a checkpoint by id, or of the namespace's latest."""
    if checkpoint_id is None:
        row = conn.execute(
            "SELECT seq, parent_checkpoint_id FROM lg_checkpoints WHERE thread_id = ? "
            "AND checkpoint_ns = ? ORDER BY seq DESC LIMIT 1",
            (thread_id, checkpoint_ns),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT seq, parent_checkpoint_id FROM lg_checkpoints WHERE thread_id = ? "
            "AND checkpoint_ns = ? AND checkpoint_id = ?",
            (thread_id, checkpoint_ns, checkpoint_id),
        ).fetchone()
    return None if row is None else (int(row[0]), row[1])


class DeltaHistory(NamedTuple):
    """What ``get_delta_channel_history`` needs, still encoded (see :func:`read_delta_history`).

    ``writes``: per visited ancestor, nearest first, its writes to the wanted
    channels as ``(task_id, channel, value, task_path, idx)``, each with the
    depth it was found at. ``starts``: each channel's nearest stored value,
    ``{channel: (depth, text or ListRef)}``.
    """

    found: bool
    writes: list[tuple[int, tuple[str, str, str, str, int]]]
    starts: dict[str, tuple[int, str | ListRef | None]]
    items: dict[ListKey, tuple[int, list[str]]]


def read_delta_history(
    conn: sqlite3.Connection,
    thread_id: str,
    checkpoint_ns: str,
    checkpoint_id: str | None,
    channels: Sequence[str],
) -> DeltaHistory:
    """Walk a checkpoint's ancestors (by parent) until each channel has a stored value.

    One recursive query steps up the parent chain and stops being read once
    every channel has its nearest stored value; then one query for those
    ancestors' writes to the channels and one per value (plus its list).
    """
    target = _find(conn, thread_id, checkpoint_ns, checkpoint_id)
    if target is None:
        return DeltaHistory(False, [], {}, {})
    remaining = set(channels)
    start_keys: dict[str, tuple[int, str]] = {}
    visited: list[str] = []
    if target[1] is not None:
        for depth, cid, keys in conn.execute(
            "WITH RECURSIVE chain (depth, checkpoint_id, parent, channels) AS ("
            "SELECT 0, checkpoint_id, parent_checkpoint_id, channels FROM lg_checkpoints "
            "WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3 "
            "UNION ALL SELECT chain.depth + 1, c.checkpoint_id, c.parent_checkpoint_id, "
            "c.channels FROM chain JOIN lg_checkpoints c ON c.thread_id = ?1 "
            "AND c.checkpoint_ns = ?2 AND c.checkpoint_id = chain.parent "
            "WHERE chain.depth < ?4) "
            "SELECT depth, checkpoint_id, channels FROM chain",
            (thread_id, checkpoint_ns, target[1], _chain_limit(conn, thread_id, checkpoint_ns)),
        ):
            visited.append(cid)
            stored = json.loads(keys)
            for channel in [c for c in remaining if c in stored]:
                start_keys[channel] = (int(depth), str(stored[channel]))
                remaining.discard(channel)
            if not remaining:
                break
    writes: list[tuple[int, tuple[str, str, str, str, int]]] = []
    if visited:
        depth_of = {cid: depth for depth, cid in enumerate(visited)}
        for cid, task_id, channel, text, task_path, idx in conn.execute(
            "SELECT checkpoint_id, task_id, channel, value, task_path, idx FROM lg_writes "
            "WHERE thread_id = ? AND checkpoint_ns = ? "
            "AND checkpoint_id IN (SELECT value FROM json_each(?)) "
            "AND channel IN (SELECT value FROM json_each(?))",
            (thread_id, checkpoint_ns, json.dumps(visited), json.dumps(list(channels))),
        ):
            writes.append((depth_of[cid], (task_id, channel, text, task_path, idx)))
    starts: dict[str, tuple[int, str | ListRef | None]] = {}
    for channel, (depth, key) in start_keys.items():
        row = conn.execute(
            "SELECT value, encoding FROM lg_blobs WHERE thread_id = ? AND checkpoint_ns = ? "
            "AND channel = ? AND key = ?",
            (thread_id, checkpoint_ns, channel, key),
        ).fetchone()
        if row is not None and row[1] == LIST:
            ref = json.loads(row[0])
            listed = ListRef((thread_id, checkpoint_ns, channel, str(ref["list"])), int(ref["len"]))
            starts[channel] = (depth, listed)
        else:
            starts[channel] = (depth, None if row is None else str(row[0]))
    refs = [value for _, value in starts.values() if isinstance(value, ListRef)]
    return DeltaHistory(True, writes, starts, _list_items(conn, refs, {}))


def _chain_limit(conn: sqlite3.Connection, thread_id: str, checkpoint_ns: str) -> int:
    """No parent chain is longer than the namespace's checkpoints (a damaged file may loop)."""
    row = conn.execute(
        "SELECT count(*) FROM lg_checkpoints WHERE thread_id = ? AND checkpoint_ns = ?",
        (thread_id, checkpoint_ns),
    ).fetchone()
    return int(row[0])


def list_checkpoints(
    conn: sqlite3.Connection,
    thread_id: str | None,
    checkpoint_ns: str | None,
    checkpoint_id: str | None,
    before: str | None,
    below_seq: int | None,
    keep: Callable[[str], bool] | None,
    count: int,
    known: Mapping[ListKey, int],
) -> Page:
    """Up to ``count`` checkpoints, newest first, with ``seq`` below ``below_seq``.

    ``before`` is a checkpoint id: only checkpoints inserted before it are listed
    (an id that is not stored compares as text, as LangGraph's savers do).
    ``keep`` filters on the metadata text, so filter keys never reach SQL.
    ``known`` says how many first elements of each list the caller already has
    (from earlier pages): only the elements after those are read.
    """
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("thread_id", thread_id),
        ("checkpoint_ns", checkpoint_ns),
        ("checkpoint_id", checkpoint_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if before is not None:
        scope = "checkpoint_id = ?" + (" AND thread_id = ?" if thread_id is not None else "")
        found = conn.execute(
            f"SELECT min(seq) FROM lg_checkpoints WHERE {scope}",  # noqa: S608 - fixed fragments
            (before,) if thread_id is None else (before, thread_id),
        ).fetchone()
        if found is not None and found[0] is not None:
            where.append("seq < ?")
            params.append(int(found[0]))
        else:
            where.append("checkpoint_id < ?")
            params.append(before)
    if below_seq is not None:
        where.append("seq < ?")
        params.append(below_seq)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    sql = f"SELECT seq, metadata FROM lg_checkpoints {clause} ORDER BY seq DESC"  # noqa: S608 - fixed fragments
    seqs: list[int] = []
    if keep is None:
        seqs = [row[0] for row in conn.execute(sql + " LIMIT ?", (*params, count))]
    else:
        for seq, metadata in conn.execute(sql, params):
            if keep(metadata):
                seqs.append(seq)
                if len(seqs) >= count:
                    break
    return _load(conn, seqs, known)


def _load(conn: sqlite3.Connection, seqs: list[int], known: Mapping[ListKey, int]) -> Page:
    """Rows for ``seqs`` (in that order) with their values and writes, and the list
    elements they need beyond ``known``: three queries, plus one per list."""
    if not seqs:
        return Page([], {})
    wanted = json.dumps(seqs)
    rows = {
        row[0]: row
        for row in conn.execute(
            f"SELECT {_COLUMNS} FROM lg_checkpoints "  # noqa: S608 - fixed column list
            "WHERE seq IN (SELECT value FROM json_each(?))",
            (wanted,),
        )
    }
    values: dict[int, dict[str, str | None]] = {seq: {} for seq in rows}
    lists: dict[int, dict[str, ListRef]] = {seq: {} for seq in rows}
    for seq, tid, ns, channel, text, encoding in conn.execute(
        "SELECT c.seq, c.thread_id, c.checkpoint_ns, j.key, b.value, b.encoding "
        "FROM lg_checkpoints c, json_each(c.channels) j "
        "LEFT JOIN lg_blobs b ON b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns "
        "AND b.channel = j.key AND b.key = j.value "
        "WHERE c.seq IN (SELECT value FROM json_each(?))",
        (wanted,),
    ):
        if encoding == LIST:
            ref = json.loads(text)
            key = (tid, ns, channel, str(ref["list"]))
            lists[seq][channel] = ListRef(key, int(ref["len"]))
        else:
            values[seq][channel] = text
    items = _list_items(
        conn, [ref for by_channel in lists.values() for ref in by_channel.values()], known
    )
    writes: dict[tuple[str, str, str], list[tuple[str, str, str, str, int]]] = {}
    for tid, ns, cid, task_id, channel, text, task_path, idx in conn.execute(
        "SELECT w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.task_id, w.channel, w.value, "
        "w.task_path, w.idx FROM lg_writes w JOIN lg_checkpoints c "
        "ON c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns "
        "AND c.checkpoint_id = w.checkpoint_id "
        "WHERE c.seq IN (SELECT value FROM json_each(?))",
        (wanted,),
    ):
        writes.setdefault((tid, ns, cid), []).append((task_id, channel, text, task_path, idx))
    out = []
    for seq in seqs:
        row = rows.get(seq)
        if row is None:
            continue
        _, tid, ns, cid, parent, metadata, checkpoint = row
        out.append(
            StoredCheckpoint(
                seq,
                tid,
                ns,
                cid,
                parent,
                metadata,
                checkpoint,
                values[seq],
                writes.get((tid, ns, cid), []),
                lists[seq],
            )
        )
    return Page(out, items)


def _list_items(
    conn: sqlite3.Connection, refs: list[ListRef], known: Mapping[ListKey, int]
) -> dict[ListKey, tuple[int, list[str]]]:
    """For each list, its elements from ``known[key]`` up to the longest ``refs`` need.

    One ordered range query per list; the elements stop at the first gap, so
    a list shorter than a row needs (trimmed meanwhile) reads as short.
    """
    longest: dict[ListKey, int] = {}
    for key, length in refs:
        longest[key] = max(length, longest.get(key, 0))
    items: dict[ListKey, tuple[int, list[str]]] = {}
    for key, length in longest.items():
        start = known.get(key, 0)
        if start >= length:
            continue
        texts: list[str] = []
        for idx, text in conn.execute(
            "SELECT idx, value FROM lg_list_items WHERE thread_id = ? AND checkpoint_ns = ? "
            "AND channel = ? AND list_id = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (*key, start, length),
        ):
            if idx != start + len(texts):
                break
            texts.append(text)
        items[key] = (start, texts)
    return items
