"""What a put and a copy cost in statements: the writer gives up the interpreter lock at each one.

A put runs three statements in the common case, whatever the number of
channels: the parent's keys, one insert of the new values under their
versions, the checkpoint row. An unchanged channel refers to its parent's value
without being encoded or read; stored values are read back only when an
insert finds a version taken (a branch that reused it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed")

from forkpoint.langgraph import ForkpointSaver, store


class Recorder:
    """Stands in for the writer's connection and records every statement it runs."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.seen: list[str] = []

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.seen.append(" ".join(sql.split()[:3]))
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.seen.append(" ".join(sql.split()[:3]))
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[Recorder]:
    path = tmp_path / "lg.db"
    with ForkpointSaver.from_conn_string(path):
        pass  # creates the file with its tables
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    yield Recorder(raw)
    raw.execute("ROLLBACK")
    raw.close()


def _never() -> str:
    raise AssertionError("an unchanged channel's value was encoded")


def request(cid: str, parent: str | None, blobs: list[store.BlobIn]) -> store.PutRequest:
    return store.PutRequest(
        thread_id="t",
        checkpoint_ns="",
        checkpoint_id=cid,
        parent_checkpoint_id=parent,
        run_id="r",
        created_at="2026-12-01T00:00:00Z",
        metadata="{}",
        checkpoint="{}",
        blobs=blobs,
    )


def channels(conn: Recorder, cid: str) -> str:
    row = conn.execute("SELECT channels FROM lg_checkpoints WHERE checkpoint_id = ?", (cid,))
    return str(row.fetchone()[0])


def test_a_put_runs_three_statements_and_leaves_unchanged_channels_alone(
    conn: Recorder,
) -> None:
    first = [store.BlobIn(name, '"1"', f'"{name}-1"') for name in ("a", "b", "c", "d")]
    store.put_checkpoint(conn, request("c1", None, first))  # type: ignore[arg-type]
    assert conn.seen == ["INSERT OR IGNORE", "INSERT INTO lg_checkpoints"]

    conn.seen.clear()
    second = [
        store.BlobIn("a", '"2"', '"a-2"'),
        *(store.BlobIn(name, '"1"', _never) for name in ("b", "c", "d")),
    ]
    store.put_checkpoint(conn, request("c2", "c1", second))  # type: ignore[arg-type]
    assert conn.seen == ["SELECT channels FROM", "INSERT OR IGNORE", "INSERT INTO lg_checkpoints"]
    assert channels(conn, "c2") == '{"a":"\\"2\\"","b":"\\"1\\"","c":"\\"1\\"","d":"\\"1\\""}'


def test_a_version_taken_by_another_value_is_read_back_and_stored_beside_it(
    conn: Recorder,
) -> None:
    store.put_checkpoint(conn, request("c1", None, [store.BlobIn("a", '"1"', '"one"')]))  # type: ignore[arg-type]
    store.put_checkpoint(conn, request("c2", "c1", [store.BlobIn("a", '"2"', '"two"')]))  # type: ignore[arg-type]
    conn.seen.clear()
    # a branch from c1 that reused version 2 for another value
    store.put_checkpoint(conn, request("c3", "c1", [store.BlobIn("a", '"2"', '"deux"')]))  # type: ignore[arg-type]
    assert conn.seen == [
        "SELECT channels FROM",
        "INSERT OR IGNORE",
        "SELECT value, encoding",  # the insert found version 2 taken: compare
        "SELECT value, encoding",  # another value: is the key beside it free?
        "INSERT OR REPLACE",  # it is: stored there
        "INSERT INTO lg_checkpoints",
    ]
    assert channels(conn, "c3") == '{"a":"\\"2\\"@c3"}'
    stored = conn.execute("SELECT key, value FROM lg_blobs WHERE channel = 'a' ORDER BY key")
    assert stored.fetchall() == [('"1"', '"one"'), ('"2"', '"two"'), ('"2"@c3', '"deux"')]

    conn.seen.clear()  # the same value again: read back, found equal, nothing stored
    store.put_checkpoint(conn, request("c4", "c1", [store.BlobIn("a", '"2"', '"two"')]))  # type: ignore[arg-type]
    assert conn.seen == [
        "SELECT channels FROM",
        "INSERT OR IGNORE",
        "SELECT value, encoding",
        "INSERT INTO lg_checkpoints",
    ]
    assert channels(conn, "c4") == '{"a":"\\"2\\""}'


def test_many_new_values_take_one_insert_per_64(conn: Recorder) -> None:
    blobs = [store.BlobIn(f"ch{i}", '"1"', f'"{i}"') for i in range(150)]
    store.put_checkpoint(conn, request("c1", None, blobs))  # type: ignore[arg-type]
    assert conn.seen == ["INSERT OR IGNORE"] * 3 + ["INSERT INTO lg_checkpoints"]
    rows = conn.execute("SELECT channel, value FROM lg_blobs").fetchall()
    assert sorted(rows) == sorted((f"ch{i}", f'"{i}"') for i in range(150))


def test_a_copy_is_one_insert_per_table_and_its_lists_take_new_ids(conn: Recorder) -> None:
    parent: str | None = None
    lists: dict[str, tuple[str, int]] = {}
    for n in range(1, 6):  # five checkpoints, two list channels growing by one item each
        blobs = [
            store.BlobIn(ch, f'"{n}"', "", [f'"{ch}{i}"' for i in range(n)], lists.get(ch))
            for ch in "ab"
        ]
        lists = store.put_checkpoint(conn, request(f"c{n}", parent, blobs))  # type: ignore[arg-type]
        parent = f"c{n}"
    assert len({list_id for list_id, _ in lists.values()}) == 2  # each appended to its own list
    conn.seen.clear()
    store.copy_thread(conn, "t", "u")  # type: ignore[arg-type]
    inserts = [sql for sql in conn.seen if sql.startswith("INSERT")]
    assert inserts == [
        "INSERT INTO lg_checkpoints",
        "INSERT INTO lg_blobs",
        "INSERT INTO lg_list_items",
        "INSERT INTO lg_writes",
    ]
    assert len(conn.seen) == 7  # and three reads: the source exists, the target is free, its lists
    ids = "SELECT DISTINCT list_id FROM lg_list_items WHERE thread_id = ?"
    copied = {row[0] for row in conn.execute(ids, ("u",))}
    assert len(copied) == 2
    assert copied.isdisjoint(list_id for list_id, _ in lists.values())
    refs = conn.execute(
        "SELECT DISTINCT json_extract(value, '$.list') FROM lg_blobs WHERE thread_id = 'u' "
        "AND encoding = 1"
    )
    assert {row[0] for row in refs} == copied
    items = "SELECT channel, idx, value FROM lg_list_items WHERE thread_id = ? ORDER BY 1, 2"
    assert conn.execute(items, ("u",)).fetchall() == conn.execute(items, ("t",)).fetchall()


def test_a_put_with_keep_last_drops_the_oldest_and_leaves_its_lists_alone(
    conn: Recorder,
) -> None:
    """The dropped checkpoints held shorter prefixes of the list the newest extend: one read
    finds no element to delete, and nothing is deleted or renamed."""
    parent: str | None = None
    lists: dict[str, tuple[str, int]] = {}
    for n in range(1, 5):
        blob = store.BlobIn("m", f'"{n}"', "", [f'"m{i}"' for i in range(n)], lists.get("m"))
        conn.seen.clear()
        put = request(f"c{n}", parent, [blob])._replace(keep_last=2)
        lists = store.put_checkpoint(conn, put)  # type: ignore[arg-type]
        parent = f"c{n}"
    assert conn.seen == [
        "SELECT channels FROM",
        "SELECT value, encoding",  # is this version's key taken?
        "SELECT max(idx), (SELECT",  # the list still ends where this put saw it end
        "INSERT INTO lg_list_items",
        "INSERT OR REPLACE",
        "INSERT INTO lg_checkpoints",
        "SELECT seq FROM",
        "DELETE FROM lg_writes",
        "DELETE FROM lg_checkpoints",
        "DELETE FROM lg_blobs",
        "WITH keep (thread_id,",  # the elements no remaining value needs: none
    ]
    ids = conn.execute("SELECT DISTINCT list_id FROM lg_list_items").fetchall()
    assert ids == [(lists["m"][0],)]
    assert conn.execute("SELECT count(*) FROM lg_list_items").fetchone() == (4,)
    assert conn.execute("SELECT checkpoint_id FROM lg_checkpoints ORDER BY seq").fetchall() == [
        ("c3",),
        ("c4",),
    ]
