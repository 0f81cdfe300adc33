"""Bad data and hostile input: edited rows, unstorable states, huge states, odd ids, no code on load."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import forkpoint.base
from forkpoint import (
    Checkpoint,
    CheckpointError,
    GraphState,
    InvalidInput,
    SerializationError,
    SqliteCheckpointer,
    StateSchema,
    StateTooLarge,
    StateVersionError,
)
from forkpoint.sqlite._thread import ConnectionThread
from tests.reliability.support import Blob, check_database, digest, iterations, make_blob, payload


class Loose(StateSchema):
    """A state with an untyped field, the door hostile data would come through."""

    value: Any = None
    f: float = 0.0
    text: str = ""


def _raw_row(path: Path, thread_id: str, step: int) -> tuple[Any, ...]:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT * FROM checkpoints WHERE thread_id = ? AND step = ?", (thread_id, step)
        ).fetchone()
        return tuple(row)
    finally:
        conn.close()


def _edit_state(path: Path, thread_id: str, step: int, value: object) -> None:
    """Change a stored state behind forkpoint's back (the one place that knows the column)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        changed = conn.execute(
            "UPDATE checkpoints SET state = ? WHERE thread_id = ? AND step = ?",
            (value, thread_id, step),
        ).rowcount
        assert changed == 1
    finally:
        conn.close()


def _bad_values(good: str) -> dict[str, object]:
    return {
        "invalid_json": "{this is not json",
        "truncated_json": good[: len(good) // 2],
        "nan": '{"n": NaN, "payload": ""}',
        "infinity": '{"n": -Infinity, "payload": ""}',
        "list": "[1, 2, 3]",
        "blob": b"\x80\x04\x95binary",
        "wrong_model": '{"n": "not a number", "payload": 5}',
        "empty": "",
        "null": "null",
    }


@pytest.mark.parametrize("kind", list(_bad_values("")))
async def test_rows_edited_behind_our_back(tmp_path: Path, kind: str) -> None:
    """A broken row: typed error naming thread and step; everything else loads; nothing rewritten."""
    path = tmp_path / "edited.db"
    async with SqliteCheckpointer.open(path, Blob) as cp:
        for t in ("victim", "bystander"):
            for s in range(4):
                await cp.save(make_blob(t, s, 512))
    good = json.dumps({"n": 2, "payload": payload(512, 2)})
    bad = _bad_values(good)[kind]
    for step in (2, 3):  # a middle step and the latest
        _edit_state(path, "victim", step, bad)
    before = {s: _raw_row(path, "victim", s) for s in range(4)}
    async with SqliteCheckpointer.open(path, Blob) as cp:
        for step in (2, 3):
            with pytest.raises(SerializationError) as info:
                await cp.get("victim", step)
            assert (info.value.thread_id, info.value.step) == ("victim", step)
            assert "'victim'" in str(info.value)
            assert f"step {step}" in str(info.value)
            assert info.value.path == str(path)
            assert await cp.get_raw("victim", step) == bad
        with pytest.raises(SerializationError) as latest:
            await cp.load("victim")
        assert (latest.value.thread_id, latest.value.step) == ("victim", 3)
        for s in (0, 1):
            got = await cp.get("victim", s)
            assert got is not None
            assert digest(got.state.data) == digest(make_blob("victim", s, 512).state.data)
        assert [m.step for m in await cp.list_checkpoints("victim")] == [0, 1, 2, 3]
        assert [t.thread_id for t in await cp.list_threads()] == ["bystander", "victim"]
        loaded = await cp.load("bystander")
        assert loaded is not None
        assert loaded.step == 3
        fork = await cp.fork("victim", 1)  # the healthy part of the history still forks
        assert [m.step for m in await cp.list_checkpoints(fork)] == [0, 1]
    assert {s: _raw_row(path, "victim", s) for s in range(4)} == before
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


class _Node:
    def __init__(self) -> None:
        self.me = self


def _unstorable() -> Iterator[tuple[str, Loose]]:
    loop: list[Any] = []
    loop.append(loop)
    looped: dict[str, Any] = {}
    looped["self"] = looped
    yield "set", Loose(value={1, 2, 3})
    yield "frozenset", Loose(value=frozenset({1}))
    yield "object", Loose(value=object())
    yield "object_cycle", Loose(value=_Node())
    yield "tuple", Loose(value=(1, 2))
    yield "bytes", Loose(value=b"raw")
    yield "nan", Loose(f=math.nan)
    yield "inf", Loose(f=math.inf)
    yield "-inf", Loose(f=-math.inf)
    yield "nan_in_any", Loose(value={"x": [1.0, math.nan]})
    yield "lone_surrogate", Loose(text="a\ud800b")
    yield "lone_surrogate_in_any", Loose(value={"k\udfff": 1})
    yield "recursive_list", Loose(value=loop)
    yield "recursive_dict", Loose(value=looped)
    yield "non_str_key", Loose(value={1: "a"})


@pytest.mark.parametrize("case", [name for name, _ in _unstorable()])
async def test_unstorable_state_rejected_before_any_write(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = dict(_unstorable())[case]
    calls: list[object] = []
    real = ConnectionThread.call

    async def spy(thread: ConnectionThread, fn: Any, *args: Any) -> Any:
        calls.append(fn)
        return await real(thread, fn, *args)

    async with SqliteCheckpointer.open(tmp_path / "u.db", Loose) as cp:
        monkeypatch.setattr(ConnectionThread, "call", spy)
        one = Checkpoint[Loose].model_construct(
            thread_id="t",
            state=GraphState[Loose].model_construct(data=state),
            step=0,
            node="n",
            queue=[],
            created_at=datetime.now(UTC),
            metadata={},
        )
        with pytest.raises(CheckpointError) as info:
            await cp.save(one)
        assert isinstance(info.value, SerializationError | InvalidInput)
        assert calls == [], "the database was touched before the state was refused"
        monkeypatch.undo()
        assert await cp.list_threads() == []
    assert "NaN" not in case or "NaN" in str(info.value) or "nan" in str(info.value).lower()


async def test_huge_states(tmp_path: Path) -> None:
    """50 MB states save, load and fork; max_state_bytes refuses larger ones before writing."""
    path = tmp_path / "huge.db"
    big = make_blob("huge", 0, 50 * 1024 * 1024)
    async with SqliteCheckpointer.open(path, Blob) as cp:
        await cp.save(big)
        await cp.save(make_blob("huge", 1, 1024))
        got = await cp.get("huge", 0)
        assert got is not None
        assert got.state.data == big.state.data
        fork = await cp.fork("huge", 0)
        forked = await cp.load(fork)
        assert forked is not None
        assert forked.state.data.payload == big.state.data.payload
    async with SqliteCheckpointer.open(path, Blob, max_state_bytes=1024 * 1024) as capped:
        with pytest.raises(StateTooLarge) as info:
            await capped.save(make_blob("huge", 2, 2 * 1024 * 1024))
        assert (info.value.thread_id, info.value.step) == ("huge", 2)
        await capped.save(make_blob("huge", 2, 1000 * 1024))
        assert [m.step for m in await capped.list_checkpoints("huge")] == [0, 1, 2]
    await check_database(path, {("huge", 0): digest(big.state.data)}, reopen_in_child=False)


ACCEPTED = [
    "plain",
    "'; DROP TABLE threads; --",
    '" OR 1=1 --',
    "%",
    "_",
    "a%b_c",
    "%%",
    "__",
    "it's",
    '"double"',
    "back\\slash",
    "[x]*?",
    "NULL",
    "emoji 🧵🔥👩‍👩‍👧",
    unicodedata.normalize("NFC", "café"),
    unicodedata.normalize("NFD", "café"),
    "  padded  ",
    "x" * forkpoint.MAX_THREAD_ID_LENGTH,
    "non\u00a0breaking",
    "$.a[0]",
]
REJECTED: list[object] = [
    "",
    " ",
    "\t\n ",
    "a\x00b",
    "\x00",
    "bell\x07",
    "new\nline",
    "del\x7f",
    "c1\x85",
    "lone\ud800",
    "\udfff",
    "x" * (forkpoint.MAX_THREAD_ID_LENGTH + 1),
    "y" * (3 * 1024 * 1024),
    b"bytes",
    7,
    None,
]


async def test_thread_ids_round_trip_exactly(tmp_path: Path, scale: int) -> None:
    """Odd but valid ids: save → load → list → fork, each its own thread, no cross-talk."""
    path = tmp_path / "ids.db"
    async with SqliteCheckpointer.open(path, Blob) as cp:
        for _ in range(iterations(1, scale)):
            for i, tid in enumerate(ACCEPTED):
                latest = await cp.load(tid)
                step = 0 if latest is None else latest.step + 1
                await cp.save(make_blob(tid, step, 16).model_copy(update={"node": f"id{i}"}))
        ids = {t.thread_id for t in await cp.list_threads()}
        assert ids == set(ACCEPTED)
        assert len(ids) == len(ACCEPTED)  # NFC and NFD spellings are two threads
        for i, tid in enumerate(ACCEPTED):
            loaded = await cp.load(tid)
            assert loaded is not None
            assert loaded.thread_id == tid
            assert loaded.node == f"id{i}"
            metas = await cp.list_checkpoints(tid)
            assert len(metas) == iterations(1, scale)
            assert all(m.node == f"id{i}" for m in metas)
            fork_id = (
                tid[:-5] + "→fork" if len(tid) >= forkpoint.MAX_THREAD_ID_LENGTH else tid + "→fork"
            )
            assert await cp.fork(tid, 0, new_thread_id=fork_id) == fork_id
            forked = await cp.load(fork_id)
            assert forked is not None
            assert forked.node == f"id{i}"
            assert forked.thread_id == fork_id
            assert [f.thread_id for f in await cp.list_forks(tid)] == [fork_id]
        assert len(await cp.list_threads()) == 2 * len(ACCEPTED)
        page = await cp.list_threads(after="%", limit=3)
        assert all(t.thread_id > "%" for t in page)
    await check_database(path, {}, contiguous=False, reopen_in_child=False)


@pytest.mark.parametrize("bad", REJECTED, ids=lambda v: repr(v)[:24])
async def test_thread_ids_rejected_before_any_sql(
    tmp_path: Path, bad: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    real = ConnectionThread.call

    async def spy(thread: ConnectionThread, fn: Any, *args: Any) -> Any:
        calls.append(fn)
        return await real(thread, fn, *args)

    async with SqliteCheckpointer.open(tmp_path / "ids.db", Blob) as cp:
        await cp.save(make_blob("ok", 0))
        monkeypatch.setattr(ConnectionThread, "call", spy)
        bad_cp = make_blob("ok", 1).model_copy(update={"thread_id": bad})
        calls_: list[Callable[[], Awaitable[Any]]] = [
            lambda: cp.save(bad_cp),
            lambda: cp.load(bad),  # type: ignore[arg-type]
            lambda: cp.get(bad, 0),  # type: ignore[arg-type]
            lambda: cp.get_raw(bad, 0),  # type: ignore[arg-type]
            lambda: cp.list_checkpoints(bad),  # type: ignore[arg-type]
            lambda: cp.thread_info(bad),  # type: ignore[arg-type]
            lambda: cp.list_forks(bad),  # type: ignore[arg-type]
            lambda: cp.fork(bad, 0),  # type: ignore[arg-type]
            lambda: cp.delete_thread(bad),  # type: ignore[arg-type]
            lambda: cp.set_thread_metadata(bad, {}),  # type: ignore[arg-type]
        ]
        if bad is not None:  # None means "no cursor" / "make me an id" there
            calls_.append(lambda: cp.fork("ok", 0, new_thread_id=bad))  # type: ignore[arg-type]
            calls_.append(lambda: cp.list_threads(after=bad))  # type: ignore[arg-type]
        for call in calls_:
            with pytest.raises(InvalidInput):
                await call()
        assert calls == []
        monkeypatch.undo()
        assert [t.thread_id for t in await cp.list_threads()] == ["ok"]
    if not isinstance(bad, str):
        return  # pydantic's own (lax) str coercion decides what a non-str becomes
    with pytest.raises(ValueError, match="thread id"):  # pydantic wraps the model's check
        Checkpoint[Blob](
            thread_id=bad,
            state=GraphState[Blob](data=Blob()),
            step=0,
            node="n",
        )


PICKLE_CALL = b"ctests.reliability.sentinel_payload\nboom\n(tR."
HOSTILE_JSON: list[dict[str, Any]] = [
    {
        "lc": 2,
        "type": "constructor",
        "id": ["tests", "reliability", "sentinel_payload", "Boom"],
        "kwargs": {"x": 1},
    },
    {"__class__": "tests.reliability.sentinel_payload.Boom", "__init__": "boom"},
    {"py/object": "tests.reliability.sentinel_payload.Boom"},
    {"__reduce__": ["tests.reliability.sentinel_payload.boom", []]},
]


async def test_no_code_runs_on_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickle bytes, LangGraph constructor payloads, __class__ keys: plain data or a typed error."""
    marker = tmp_path / "imported"
    monkeypatch.setenv("FORKPOINT_SENTINEL_MARKER", str(marker))
    path = tmp_path / "hostile.db"
    async with SqliteCheckpointer.open(path, Loose) as cp:
        for step in range(3 + len(HOSTILE_JSON)):
            await cp.save(
                Checkpoint[Loose](
                    thread_id="t", state=GraphState[Loose](data=Loose()), step=step, node="n"
                )
            )
        await cp.load("t")  # warm every lazy import of a normal load
        await cp.list_checkpoints("t")
    _edit_state(path, "t", 0, PICKLE_CALL)
    _edit_state(path, "t", 1, PICKLE_CALL.decode("latin-1"))
    _edit_state(path, "t", 2, json.dumps(HOSTILE_JSON[0]))  # as the whole state
    for i, doc in enumerate(HOSTILE_JSON):  # inside the untyped field, and in metadata
        _edit_state(path, "t", 3 + i, json.dumps({"value": doc, "f": 1.5, "text": ""}))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE checkpoints SET metadata = ? WHERE thread_id = 't' AND step = 3",
        (json.dumps(HOSTILE_JSON[0]),),
    )
    conn.execute("UPDATE threads SET metadata = ?", (json.dumps(HOSTILE_JSON[1]),))
    conn.close()
    modules = set(sys.modules)
    async with SqliteCheckpointer.open(path, Loose) as cp:
        for step in (0, 1):
            with pytest.raises(SerializationError):
                await cp.get("t", step)
        # Keys the model does not know are refused by name, never dropped (nor imported).
        with pytest.raises(StateVersionError) as unknown:
            await cp.get("t", 2)
        assert unknown.value.unknown_keys == ("lc", "type", "id", "kwargs")
        for i, doc in enumerate(HOSTILE_JSON):
            got = await cp.get("t", 3 + i)
            assert got is not None
            assert got.state.data.value == doc
            assert type(got.state.data.value) is dict
        metas = await cp.list_checkpoints("t")
        assert metas[3].metadata == HOSTILE_JSON[0]
        info = await cp.thread_info("t")
        assert info is not None
        assert info.metadata == HOSTILE_JSON[1]
    assert "tests.reliability.sentinel_payload" not in sys.modules
    assert not marker.exists()
    assert set(sys.modules) - modules == set()


class _Backwards:
    """A clock that runs backwards: each call is an hour earlier than the one before."""

    def __init__(self) -> None:
        self.at = datetime(2030, 1, 1, tzinfo=UTC)

    def now(self, tz: Any = None) -> datetime:
        self.at -= timedelta(hours=1)
        return self.at


async def test_clock_jumping_backwards(
    tmp_path: Path, scale: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time going backwards between saves changes nothing: order is by step, always."""
    clock = _Backwards()

    class FakeDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> FakeDatetime:
            value = clock.now(tz)
            return cls.fromtimestamp(value.timestamp(), tz=UTC)

    monkeypatch.setattr(forkpoint.base, "datetime", FakeDatetime)
    path = tmp_path / "clock.db"
    n = iterations(12, scale)
    async with SqliteCheckpointer.open(path, Blob) as cp:
        for step in range(n):
            one = make_blob("t", step, created_at=clock.now())
            await cp.save(one)
        metas = await cp.list_checkpoints("t")
        assert [m.step for m in metas] == list(range(n))
        assert metas[0].created_at > metas[-1].created_at  # the times really went backwards
        assert [m.step for m in await cp.list_checkpoints("t", newest_first=True, limit=3)] == [
            n - 1,
            n - 2,
            n - 3,
        ]
        loaded = await cp.load("t")
        assert loaded is not None
        assert loaded.step == n - 1
        info = await cp.thread_info("t")
        assert info is not None
        assert info.latest_step == n - 1
        report = await cp.prune("t", keep_last=3)
        assert report.checkpoints_removed == n - 3
        assert [m.step for m in await cp.list_checkpoints("t")] == [n - 3, n - 2, n - 1]
        fork = await cp.fork("t", n - 2)
        assert [m.step for m in await cp.list_checkpoints(fork)] == [n - 3, n - 2]
