"""ForkpointSaver beyond the conformance suite: sync use, ordering, writes, storage, refusals."""

from __future__ import annotations

import asyncio
import operator
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed")

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph

from forkpoint.errors import (
    CheckpointerClosed,
    CheckpointNotFound,
    InvalidInput,
    NotAForkpointDatabase,
    ThreadExists,
)
from forkpoint.langgraph import (
    ForkpointSaver,
    SyncCallOnEventLoop,
    UndecodableValue,
    UnregisteredType,
)
from forkpoint.langgraph import saver as saver_module
from forkpoint.sqlite import _writer

SENTINEL = "tests.reliability.sentinel_payload"


class Notes(TypedDict):
    notes: Annotated[list[str], operator.add]


def config(thread: str, checkpoint_id: str | None = None, ns: str = "") -> Any:
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


def checkpoint(
    values: dict[str, Any], versions: dict[str, Any], cid: str | None = None
) -> Checkpoint:
    cp = empty_checkpoint()
    cp["id"] = cid or str(uuid6(clock_seq=-1))
    cp["channel_values"] = values
    cp["channel_versions"] = versions
    return cp


def meta(step: int = 0, **extra: Any) -> CheckpointMetadata:
    return {"source": "loop", "step": step, "parents": {}, **extra}  # type: ignore[typeddict-item]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "lg.db")


@pytest.fixture
async def saver(db: str) -> AsyncIterator[ForkpointSaver]:
    async with ForkpointSaver.from_conn_string(db) as s:
        yield s


@pytest.fixture
def sync_saver(db: str) -> Iterator[ForkpointSaver]:
    with ForkpointSaver.from_conn_string(db) as s:
        yield s


def table_count(db: str, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - test tables
    finally:
        conn.close()


# --- sync use ------------------------------------------------------------------------------------


def test_sync_methods_work_from_plain_threads_and_pools(sync_saver: ForkpointSaver) -> None:
    def work(i: int) -> int:
        stored = sync_saver.put(config(f"t{i}"), checkpoint({"n": i}, {"n": 1}), meta(), {"n": 1})
        sync_saver.put_writes(stored, [("n", i * 10)], "task")
        tup = sync_saver.get_tuple(config(f"t{i}"))
        assert tup is not None
        assert tup.pending_writes == [("task", "n", i * 10)]
        return int(tup.checkpoint["channel_values"]["n"])

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(work, range(12))) == list(range(12))
    thread = threading.Thread(target=work, args=(99,))
    thread.start()
    thread.join()
    assert len(list(sync_saver.list(None))) == 13


async def test_a_sync_call_on_the_event_loop_thread_fails_at_once(saver: ForkpointSaver) -> None:
    """LangGraph's #7857: a sync put on the loop's thread hung forever; here it is an error."""
    cp = checkpoint({"n": 1}, {"n": 1})
    with pytest.raises(SyncCallOnEventLoop, match="aput"):
        saver.put(config("t"), cp, meta(), {"n": 1})
    with pytest.raises(SyncCallOnEventLoop, match="aget_tuple"):
        saver.get_tuple(config("t"))
    with pytest.raises(SyncCallOnEventLoop, match="alist"):
        saver.list(None)
    calls: list[Callable[[], object]] = [
        lambda: saver.put_writes(config("t", "x"), [], "task"),
        lambda: saver.delete_thread("t"),
        lambda: saver.delete_for_runs(["r"]),
        lambda: saver.copy_thread("t", "u"),
        lambda: saver.prune(["t"]),
    ]
    for call in calls:
        with pytest.raises(SyncCallOnEventLoop):
            call()
    assert await saver.aget_tuple(config("t")) is None  # nothing was written
    # the same call from a worker thread, while the loop runs, is fine
    await asyncio.to_thread(saver.put, config("t"), cp, meta(), {"n": 1})
    assert await saver.aget_tuple(config("t")) is not None


# --- ordering and replacing ------------------------------------------------------------------------


async def test_latest_is_the_last_inserted_not_the_largest_id(saver: ForkpointSaver) -> None:
    """Order follows insertion, so a clock that went backwards cannot reorder a thread."""
    ids = ["ffffffff-0000-6000-8000-000000000000", "00000000-0000-6000-8000-000000000000"]
    parent = None
    for i, cid in enumerate(ids):
        conf = config("t", parent)
        await saver.aput(conf, checkpoint({"n": i}, {"n": i + 1}, cid), meta(i), {"n": i + 1})
        parent = cid
    latest = await saver.aget_tuple(config("t"))
    assert latest is not None
    assert latest.config["configurable"]["checkpoint_id"] == ids[1]
    listed = [t.config["configurable"]["checkpoint_id"] async for t in saver.alist(config("t"))]
    assert listed == [ids[1], ids[0]]
    before = [
        t.checkpoint["id"] async for t in saver.alist(config("t"), before=config("t", ids[1]))
    ]
    assert before == [ids[0]]


async def test_put_of_an_existing_id_replaces_it_in_place(saver: ForkpointSaver) -> None:
    first = await saver.aput(config("t"), checkpoint({"n": 1}, {"n": 1}, "a"), meta(0), {"n": 1})
    await saver.aput(first, checkpoint({"n": 2}, {"n": 2}, "b"), meta(1), {"n": 2})
    await saver.aput(config("t"), checkpoint({"n": 9}, {"n": 3}, "a"), meta(5), {"n": 3})
    listed = [t async for t in saver.alist(config("t"))]
    assert [t.checkpoint["id"] for t in listed] == ["b", "a"]
    assert listed[1].checkpoint["channel_values"] == {"n": 9}
    assert listed[1].metadata["step"] == 5


async def test_replacing_a_checkpoint_never_changes_what_its_children_hold(
    saver: ForkpointSaver,
) -> None:
    """A child refers to its parent's unchanged values: a replaced parent stores new ones beside."""
    parent = config("t")
    await saver.aput(parent, checkpoint({"a": "v"}, {"a": 1}, "x"), meta(0), {"a": 1})
    await saver.aput(parent, checkpoint({"a": "w"}, {"a": 1}, "x"), meta(0), {"a": 1})
    z = await saver.aput(config("t", "x"), checkpoint({"a": "w"}, {"a": 1}, "z"), meta(1), {})
    await saver.aput(parent, checkpoint({"a": "y"}, {"a": 1}, "x"), meta(0), {"a": 1})
    lists = await saver.aput(
        parent, checkpoint({"a": list(range(9))}, {"a": 1}, "x"), meta(0), {"a": 1}
    )
    child = await saver.aput(lists, checkpoint({"a": list(range(9))}, {"a": 1}, "c"), meta(1), {})
    await saver.aput(parent, checkpoint({"a": list(range(8))}, {"a": 1}, "x"), meta(0), {"a": 1})
    async with ForkpointSaver.from_conn_string(saver.path) as fresh:  # nothing cached
        for conf, want in ((z, "w"), (child, list(range(9))), (config("t", "x"), list(range(8)))):
            tup = await fresh.aget_tuple(conf)
            assert tup is not None
            assert tup.checkpoint["channel_values"] == {"a": want}


# --- pending writes --------------------------------------------------------------------------------


async def test_writes_that_arrive_before_their_checkpoint_are_kept(saver: ForkpointSaver) -> None:
    cid = str(uuid6(clock_seq=-1))
    await asyncio.gather(
        *(saver.aput_writes(config("t", cid), [(f"ch{i}", i)], f"task{i}") for i in range(5))
    )
    assert await saver.aget_tuple(config("t", cid)) is None
    await saver.aput(config("t"), checkpoint({}, {}, cid), meta(), {})
    tup = await saver.aget_tuple(config("t", cid))
    assert tup is not None
    assert tup.pending_writes == [(f"task{i}", f"ch{i}", i) for i in range(5)]


async def test_special_writes_replace_and_ordinary_writes_are_idempotent(
    saver: ForkpointSaver,
) -> None:
    stored = await saver.aput(config("t"), checkpoint({}, {}), meta(), {})
    await saver.aput_writes(stored, [("a", 1), ("b", 2)], "task")
    await saver.aput_writes(stored, [("a", 100), ("b", 200)], "task")  # a retry: kept as first
    await saver.aput_writes(stored, [("__error__", ValueError("one"))], "task")
    await saver.aput_writes(stored, [("__error__", ValueError("two"))], "task")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert tup.pending_writes == [
        ("task", "__error__", "ValueError('two')"),
        ("task", "a", 1),
        ("task", "b", 2),
    ]


async def test_pending_writes_come_back_in_task_path_order(saver: ForkpointSaver) -> None:
    stored = await saver.aput(config("t"), checkpoint({}, {}), meta(), {})
    await saver.aput_writes(stored, [("x", "second")], "a-task", "~2")
    await saver.aput_writes(stored, [("x", "first")], "z-task", "~1")
    tup = await saver.aget_tuple(stored)
    assert tup is not None
    assert [w[2] for w in tup.pending_writes or []] == ["first", "second"]


# --- storage -------------------------------------------------------------------------------------


async def test_an_unchanged_channel_is_stored_once(saver: ForkpointSaver, db: str) -> None:
    big = [HumanMessage("x" * 1000, id=str(i)) for i in range(50)]
    parent = None
    for step in range(10):
        values = {"messages": big, "counter": step}
        versions = {"messages": "v1", "counter": f"c{step}"}
        new: dict[str, Any] = {"counter": f"c{step}"} if step else dict(versions)
        parent = await saver.aput(
            parent or config("t"), checkpoint(values, versions), meta(step), new
        )
    assert table_count(db, "lg_blobs") == 11  # one messages value, ten counters
    history = [t async for t in saver.alist(config("t"))]
    assert all(t.checkpoint["channel_values"]["messages"] == big for t in history)
    assert [t.checkpoint["channel_values"]["counter"] for t in history] == list(range(9, -1, -1))


async def test_a_reused_version_with_another_value_does_not_overwrite(
    saver: ForkpointSaver,
) -> None:
    """Two branches that both call their new value version 2 keep their own values."""
    root = await saver.aput(config("t"), checkpoint({"n": 0}, {"n": 1}), meta(0), {"n": 1})
    a = await saver.aput(root, checkpoint({"n": "A"}, {"n": 2}), meta(1), {"n": 2})
    b = await saver.aput(root, checkpoint({"n": "B"}, {"n": 2}), meta(1), {"n": 2})
    a_child = await saver.aput(a, checkpoint({"n": "A"}, {"n": 2}), meta(2), {})
    for conf, want in ((a, "A"), (b, "B"), (a_child, "A"), (root, 0)):
        tup = await saver.aget_tuple(conf)
        assert tup is not None
        assert tup.checkpoint["channel_values"]["n"] == want


async def test_deleting_runs_from_the_middle_leaves_the_rest_exact(
    saver: ForkpointSaver, db: str
) -> None:
    parent = None
    stored = []
    for step in range(6):
        run = f"run{step // 2}"
        values = {"log": list(range(step + 1)), "same": "constant"}
        versions = {"log": step + 1, "same": 1}
        new: dict[str, Any] = {"log": step + 1, "same": 1} if step == 0 else {"log": step + 1}
        parent = await saver.aput(
            parent or config("t"), checkpoint(values, versions), meta(step, run_id=run), new
        )
        await saver.aput_writes(parent, [("log", step)], f"task{step}")
        stored.append(parent)
    await saver.adelete_for_runs(["run1"])
    left = [t async for t in saver.alist(config("t"))]
    assert [t.metadata["step"] for t in left] == [5, 4, 1, 0]
    for tup in left:
        step = tup.metadata["step"]
        assert tup.checkpoint["channel_values"] == {
            "log": list(range(step + 1)),
            "same": "constant",
        }
        assert tup.pending_writes == [(f"task{step}", "log", step)]
    assert table_count(db, "lg_blobs") == 5  # four logs and the shared constant
    assert table_count(db, "lg_writes") == 4


async def test_copy_thread_refuses_a_missing_source_and_a_taken_target(
    saver: ForkpointSaver,
) -> None:
    await saver.aput(config("a"), checkpoint({"n": 1}, {"n": 1}), meta(), {"n": 1})
    await saver.aput(config("b"), checkpoint({"n": 2}, {"n": 1}), meta(), {"n": 1})
    with pytest.raises(CheckpointNotFound):
        await saver.acopy_thread("missing", "c")
    with pytest.raises(ThreadExists):
        await saver.acopy_thread("a", "b")
    tup = await saver.aget_tuple(config("b"))
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"n": 2}


async def test_prune_refuses_an_unknown_strategy(saver: ForkpointSaver) -> None:
    await saver.aput(config("a"), checkpoint({"n": 1}, {"n": 1}), meta(), {"n": 1})
    with pytest.raises(InvalidInput, match="strategy"):
        await saver.aprune(["a"], strategy="keep_oldest")
    with pytest.raises(InvalidInput, match="list"):
        await saver.aprune("a")
    assert len([t async for t in saver.alist(config("a"))]) == 1


# --- filters and bad input ------------------------------------------------------------------------


async def test_filters_compare_values_and_never_reach_sql(saver: ForkpointSaver) -> None:
    parent = None
    for step in range(4):
        parent = await saver.aput(
            parent or config("t"),
            checkpoint({}, {}),
            meta(step, score=step % 2, tags={"k": [step]}),
            {},
        )
    hits = [t.metadata["step"] async for t in saver.alist(config("t"), filter={"score": 1})]
    assert hits == [3, 1]
    nested = [t.metadata["step"] async for t in saver.alist(None, filter={"tags": {"k": [2]}})]
    assert nested == [2]
    evil = {"step') OR 1=1 --": 0, "$.step": 0}
    assert [t async for t in saver.alist(config("t"), filter=evil)] == []
    limited = [t async for t in saver.alist(config("t"), filter={"score": 1}, limit=1)]
    assert [t.metadata["step"] for t in limited] == [3]


async def test_bad_arguments_are_invalid_input(saver: ForkpointSaver) -> None:
    with pytest.raises(InvalidInput):
        await saver.aget_tuple({"configurable": {}})
    with pytest.raises(InvalidInput):
        await saver.aget_tuple("t")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await saver.aput_writes(config("t"), [("a", 1)], "task")  # no checkpoint id
    with pytest.raises(InvalidInput):
        [t async for t in saver.alist(None, limit="3")]  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ForkpointSaver(3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ForkpointSaver(":memory:", durability="fast")  # type: ignore[arg-type]


async def test_an_unregistered_value_is_refused_before_anything_is_written(
    saver: ForkpointSaver, db: str
) -> None:
    class Mystery:
        pass

    cp = checkpoint({"ok": 1, "bad": {"deep": [Mystery()]}}, {"ok": 1, "bad": 1})
    with pytest.raises(UnregisteredType) as caught:
        await saver.aput(config("t"), cp, meta(), {"ok": 1, "bad": 1})
    assert caught.value.channel == "bad"
    assert caught.value.where == "$.deep[0]"
    stored = await saver.aput(config("t"), checkpoint({}, {}), meta(), {})
    with pytest.raises(UnregisteredType):
        await saver.aput_writes(stored, [("ok", 1), ("bad", Mystery())], "task")
    assert table_count(db, "lg_blobs") == 0
    assert table_count(db, "lg_writes") == 0


# --- the file ------------------------------------------------------------------------------------


async def test_a_hostile_row_is_a_typed_error_that_runs_nothing(
    saver: ForkpointSaver, db: str
) -> None:
    stored = await saver.aput(config("t"), checkpoint({"n": 1}, {"n": 1}), meta(), {"n": 1})
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE lg_blobs SET value = ?",
        (f'{{"__fp__": "{SENTINEL}.Boom", "v": {{}}}}',),
    )
    conn.commit()
    conn.close()
    sys.modules.pop(SENTINEL, None)
    with pytest.raises(UndecodableValue) as caught:
        await saver.aget_tuple(stored)
    assert caught.value.channel == "n"
    assert caught.value.thread_id == "t"
    assert SENTINEL not in sys.modules


def test_another_applications_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = tmp_path / "langgraph.sqlite"
    with SqliteSaver.from_conn_string(str(path)) as theirs:
        theirs.setup()
    before = path.read_bytes()
    with pytest.raises(NotAForkpointDatabase, match="another application"):
        ForkpointSaver(path)
    assert path.read_bytes() == before


async def test_a_closed_saver_says_so(db: str) -> None:
    saver = ForkpointSaver(db)
    await saver.aclose()
    with pytest.raises(CheckpointerClosed):
        await saver.aget_tuple(config("t"))
    with pytest.raises(CheckpointerClosed):
        await asyncio.to_thread(saver.get_tuple, config("t"))
    saver.close()  # idempotent


async def test_checkpoints_survive_reopening(db: str) -> None:
    async with ForkpointSaver.from_conn_string(db) as first:
        await first.aput(
            config("t"), checkpoint({"m": [HumanMessage("hi", id="1")]}, {"m": 1}), meta(), {"m": 1}
        )
    with ForkpointSaver.from_conn_string(db) as second:
        tup = await asyncio.to_thread(second.get_tuple, config("t"))
    assert tup is not None
    assert tup.checkpoint["channel_values"] == {"m": [HumanMessage("hi", id="1")]}


def test_one_saver_serves_several_event_loops_and_plain_threads(db: str) -> None:
    """The saver's engine lives on its own loop, so callers' loops may come and go."""
    with ForkpointSaver.from_conn_string(db) as saver:
        first = asyncio.run(
            saver.aput(config("t"), checkpoint({"n": 1}, {"n": 1}), meta(), {"n": 1})
        )
        asyncio.run(saver.aput_writes(first, [("n", 2)], "task"))
        tup = saver.get_tuple(config("t"))
        assert tup is not None
        assert tup.pending_writes == [("task", "n", 2)]
        again = asyncio.run(saver.aget_tuple(config("t")))
        assert again is not None
        assert again.checkpoint["channel_values"] == {"n": 1}


def test_memory_is_a_private_file_that_goes_away_on_close() -> None:
    saver = ForkpointSaver(":memory:")
    folder = Path(saver.path).parent
    saver.put(config("t"), checkpoint({"n": 1}, {"n": 1}), meta(), {"n": 1})
    assert saver.get_tuple(config("t")) is not None
    other = ForkpointSaver(":memory:")
    assert other.get_tuple(config("t")) is None  # each one is its own database
    other.close()
    saver.close()
    assert not folder.exists()


async def test_a_missing_stored_value_is_a_typed_error(saver: ForkpointSaver, db: str) -> None:
    stored = await saver.aput(config("t"), checkpoint({"n": 1}, {"n": 1}), meta(), {"n": 1})
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM lg_blobs")
    conn.commit()
    conn.close()
    with pytest.raises(UndecodableValue, match="missing") as caught:
        await saver.aget_tuple(stored)
    assert caught.value.channel == "n"


async def test_delete_inactive_removes_threads_idle_for_longer_than_the_ttl(
    saver: ForkpointSaver, db: str
) -> None:
    for thread in ("old", "fresh"):
        stored = await saver.aput(config(thread), checkpoint({"n": 1}, {"n": 1}), meta(), {"n": 1})
        await saver.aput_writes(stored, [("n", 2)], "task")
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE lg_checkpoints SET created_at = '2020-01-01T00:00:00.000000Z' WHERE thread_id = 'old'"
    )
    conn.commit()
    conn.close()
    assert await saver.adelete_inactive(timedelta(days=1)) == ["old"]
    assert await saver.aget_tuple(config("old")) is None
    assert await saver.aget_tuple(config("fresh")) is not None
    assert table_count(db, "lg_writes") == 1
    assert await asyncio.to_thread(saver.delete_inactive, timedelta(0)) == ["fresh"]
    with pytest.raises(InvalidInput):
        await saver.adelete_inactive(3)  # type: ignore[arg-type]


async def test_vacuum_gives_deleted_space_back(saver: ForkpointSaver, db: str) -> None:
    big = "x" * 200_000
    parent = None
    for step in range(20):
        parent = await saver.aput(
            parent or config("t"),
            checkpoint({"blob": f"{step}{big}"}, {"blob": step + 1}),
            meta(step),
            {"blob": step + 1},
        )
    await saver.adelete_thread("t")
    before = os.path.getsize(db)
    shrank = await saver.avacuum()
    assert shrank > 1_000_000
    assert os.path.getsize(db) < before


async def test_a_steps_pending_writes_share_the_commit_of_its_checkpoint(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transaction holds only pending writes: each waits for the checkpoint that follows it.

    The linger is made long here so the test does not depend on the machine's
    speed; what it checks is that the saver lets writes wait at all.
    """

    def node(name: str) -> Any:  # Any: StateGraph.add_node's overloads want a plain function
        def note(state: Notes) -> dict[str, Any]:
            return {"notes": [name]}

        return note

    builder = StateGraph(Notes)
    for name in "abcd":
        builder.add_node(name, node(name))
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("a", "c")
    builder.add_edge(["b", "c"], "d")
    builder.add_edge("d", END)

    kinds: list[list[str]] = []
    real = _writer._run_batch

    def recording(conn: sqlite3.Connection, jobs: list[Any]) -> list[tuple[bool, Any]]:
        kinds.append([job.fn.__name__ for job in jobs])
        return real(conn, jobs)

    monkeypatch.setattr(_writer, "_run_batch", recording)
    monkeypatch.setattr(saver_module, "_WRITES_LINGER", 30.0)
    async with ForkpointSaver.from_conn_string(db) as s:
        graph = builder.compile(checkpointer=s)
        for i in range(10):
            out = await asyncio.wait_for(
                graph.ainvoke({"notes": []}, config(f"t{i}"), durability="async"), 20
            )
            assert sorted(out["notes"]) == ["a", "b", "c", "d"]

        def sync_runs() -> None:  # the sync methods, from LangGraph's own worker threads
            for i in range(10):
                out = graph.invoke({"notes": []}, config(f"s{i}"), durability="async")
                assert sorted(out["notes"]) == ["a", "b", "c", "d"]

        await asyncio.wait_for(asyncio.to_thread(sync_runs), 60)
    writes_only = [batch for batch in kinds if set(batch) == {"put_writes"}]
    assert sum(batch.count("put_writes") for batch in kinds) == 20 * 5  # the input, a, b, c, d
    assert writes_only == []


async def test_caller_chosen_versions_never_mix_branches(saver: ForkpointSaver) -> None:
    """A version holding "@", and a value whose JSON reads like a stored list's reference."""
    root = await saver.aput(config("t"), checkpoint({"n": 0}, {"n": "v@0"}), meta(0), {"n": "v@0"})
    await saver.aput(root, checkpoint({"n": "A"}, {"n": "v@1"}), meta(1), {"n": "v@1"})
    b = await saver.aput(root, checkpoint({"n": "B"}, {"n": "v@1"}), meta(1), {"n": "v@1"})
    child = await saver.aput(b, checkpoint({"n": "B"}, {"n": "v@1"}), meta(2), {})
    items = [f"e{i}" for i in range(8)]
    lookalike = {"list": "1", "len": 8}
    start = await saver.aput(config("u"), checkpoint({"v": 0}, {"v": 0}), meta(0), {"v": 0})
    lst = await saver.aput(start, checkpoint({"v": items}, {"v": 1}), meta(1), {"v": 1})
    other = await saver.aput(start, checkpoint({"v": lookalike}, {"v": 1}), meta(1), {"v": 1})
    async with ForkpointSaver.from_conn_string(saver.path) as fresh:  # nothing cached
        for conf, want in ((b, {"n": "B"}), (child, {"n": "B"}), (lst, {"v": items})):
            tup = await fresh.aget_tuple(conf)
            assert tup is not None
            assert tup.checkpoint["channel_values"] == want
        tup = await fresh.aget_tuple(other)
        assert tup is not None
        assert tup.checkpoint["channel_values"] == {"v": lookalike}
