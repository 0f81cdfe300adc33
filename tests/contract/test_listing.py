"""list_checkpoints, list_threads, thread_info, metadata and metadata filters, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from forkpoint import HistoryCheckpointer, InvalidInput, SerializationError, StepConflict
from tests.conftest import Counter, make_cp
from tests.contract._util import snapshot


async def _steps(cp: HistoryCheckpointer[Counter], **kw: Any) -> list[int]:
    return [m.step for m in await cp.list_checkpoints("t", **kw)]


@pytest.fixture
async def ten(checkpointer: HistoryCheckpointer[Counter]) -> HistoryCheckpointer[Counter]:
    """Thread ``t`` with steps 0, 2, 4, ..., 18."""
    for step in range(0, 20, 2):
        await checkpointer.save(make_cp("t", step, node=f"n{step}", metadata={"s": step}))
    await checkpointer.save(make_cp("other", 1))
    return checkpointer


async def test_list_checkpoints_in_step_order_with_metadata(
    ten: HistoryCheckpointer[Counter],
) -> None:
    listed = await ten.list_checkpoints("t")
    assert [m.step for m in listed] == list(range(0, 20, 2))
    assert [m.node for m in listed] == [f"n{s}" for s in range(0, 20, 2)]
    assert [m.metadata for m in listed] == [{"s": s} for s in range(0, 20, 2)]
    for m in listed:
        full = await ten.get("t", m.step)
        assert full is not None
        assert m.created_at == full.created_at


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"after": 4}, [6, 8, 10, 12, 14, 16, 18]),
        ({"after": 5}, [6, 8, 10, 12, 14, 16, 18]),
        ({"before": 4}, [0, 2]),
        ({"after": 2, "before": 10}, [4, 6, 8]),
        ({"after": 10, "before": 2}, []),
        ({"after": 4, "before": 6}, []),
        ({"after": 18}, []),
        ({"before": 0}, []),
        ({"after": 0, "before": 2**63 - 1}, [2, 4, 6, 8, 10, 12, 14, 16, 18]),
        ({"limit": 3}, [0, 2, 4]),
        ({"limit": 0}, []),
        ({"limit": 100}, list(range(0, 20, 2))),
        ({"newest_first": True}, list(range(18, -1, -2))),
        ({"newest_first": True, "limit": 1}, [18]),
        ({"newest_first": True, "limit": 3, "before": 10}, [8, 6, 4]),
        ({"newest_first": True, "after": 12}, [18, 16, 14]),
        ({"after": 3, "limit": 2}, [4, 6]),
        ({"filter": {"s": 4}}, [4]),
        ({"filter": {"s": 4}, "after": 4}, []),
        ({"filter": {}}, list(range(0, 20, 2))),
    ],
)
async def test_list_checkpoints_bounds_are_exclusive_and_limit_follows_order(
    ten: HistoryCheckpointer[Counter], kw: dict[str, Any], expected: list[int]
) -> None:
    assert await _steps(ten, **kw) == expected


async def test_list_threads_pages_by_id(checkpointer: HistoryCheckpointer[Counter]) -> None:
    ids = [f"t{i:02d}" for i in range(7)]
    for tid in reversed(ids):
        await checkpointer.save(make_cp(tid, 0))
    assert [t.thread_id for t in await checkpointer.list_threads()] == ids
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await checkpointer.list_threads(limit=3, after=cursor)
        if not page:
            break
        pages.append([t.thread_id for t in page])
        cursor = page[-1].thread_id
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]
    assert [t.thread_id for t in await checkpointer.list_threads(after="t035")] == ids[4:]
    assert [t.thread_id for t in await checkpointer.list_threads(after="a")] == ids
    assert await checkpointer.list_threads(after="z") == []
    assert await checkpointer.list_threads(limit=0) == []


async def test_thread_info_summarises_the_thread(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    for step in (3, 7, 8):
        await checkpointer.save(make_cp("t", step))
    info = await checkpointer.thread_info("t")
    assert info is not None
    assert (info.thread_id, info.latest_step, info.checkpoint_count) == ("t", 8, 3)
    assert info.metadata == {}
    assert [i.model_dump() for i in await checkpointer.list_threads()] == [info.model_dump()]


async def test_delete_thread_returns_whether_it_existed(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("t", 0))
    await checkpointer.save(make_cp("t", 1))
    await checkpointer.save(make_cp("keep", 0))
    assert await checkpointer.delete_thread("t") is True
    assert await checkpointer.delete_thread("t") is False
    assert await checkpointer.delete_thread("never") is False
    assert await checkpointer.load("t") is None
    assert await checkpointer.get("t", 0) is None
    assert await checkpointer.list_checkpoints("t") == []
    assert await checkpointer.thread_info("t") is None
    assert [t.thread_id for t in await checkpointer.list_threads()] == ["keep"]
    await checkpointer.save(make_cp("t", 0))  # a deleted id can start afresh at any step
    info = await checkpointer.thread_info("t")
    assert info is not None
    assert info.checkpoint_count == 1


async def test_thread_metadata_on_save_and_set(checkpointer: HistoryCheckpointer[Counter]) -> None:
    await checkpointer.save(make_cp("t", 0), thread_metadata={"owner": "ann", "n": 1})
    info = await checkpointer.thread_info("t")
    assert info is not None
    assert info.metadata == {"owner": "ann", "n": 1}
    await checkpointer.save(make_cp("t", 1))  # no thread_metadata: kept
    assert (await checkpointer.thread_info("t")).metadata == {"owner": "ann", "n": 1}  # type: ignore[union-attr]
    await checkpointer.save(make_cp("t", 2), thread_metadata={"owner": "bob"})  # replaced whole
    assert (await checkpointer.thread_info("t")).metadata == {"owner": "bob"}  # type: ignore[union-attr]
    await checkpointer.set_thread_metadata("t", {"x": {"y": [1, None]}})
    assert (await checkpointer.thread_info("t")).metadata == {"x": {"y": [1, None]}}  # type: ignore[union-attr]
    await checkpointer.set_thread_metadata("t", {})
    assert (await checkpointer.thread_info("t")).metadata == {}  # type: ignore[union-attr]
    # Checkpoint metadata is separate from thread metadata.
    assert [m.metadata for m in await checkpointer.list_checkpoints("t")] == [{}, {}, {}]


async def test_conflicting_save_does_not_set_thread_metadata(
    checkpointer: HistoryCheckpointer[Counter],
) -> None:
    await checkpointer.save(make_cp("t", 1), thread_metadata={"v": 1})
    with pytest.raises(StepConflict):
        await checkpointer.save(make_cp("t", 0), thread_metadata={"v": 2})
    assert (await checkpointer.thread_info("t")).metadata == {"v": 1}  # type: ignore[union-attr]


METADATA: dict[str, dict[str, Any]] = {
    "a": {"kind": "x", "n": 1, "flag": True, "none": None, "nested": {"k": "v", "d": {"e": 2}}},
    "b": {"kind": "y", "n": 1.5, "flag": False, "nested": {"k": "w"}},
    "c": {"kind": "x", "n": True, "flag": 1, "a.b": 1, "nested": "not-an-object"},
    "d": {"kind": "x", "a": {"b": 2}, "n": 0, "none": "None", "x') OR '1'='1": 5},
    "e": {},
}
FILTERS: list[tuple[dict[str, Any], list[str]]] = [
    ({"kind": "x"}, ["a", "c", "d"]),
    ({"kind": "x", "n": 1}, ["a"]),
    ({"n": 1.0}, ["a"]),
    ({"n": 1.5}, ["b"]),
    ({"n": True}, ["c"]),  # True is no number
    ({"flag": 1}, ["c"]),  # and 1 is no bool
    ({"flag": True}, ["a"]),
    ({"flag": False}, ["b"]),
    ({"n": 0}, ["d"]),
    ({"none": None}, ["a"]),  # null, not "None", not missing
    ({"none": "None"}, ["d"]),
    ({"missing": None}, []),
    ({"nested": {"k": "v"}}, ["a"]),
    ({"nested": {"d": {"e": 2}}}, ["a"]),
    ({"nested": {}}, ["a", "b"]),  # any object, not a string
    ({"nested": {"k": "v", "d": {"e": 3}}}, []),
    ({"a.b": 1}, ["c"]),  # a key with a dot is one key
    ({"a": {"b": 2}}, ["d"]),
    ({"$.kind": "x"}, []),
    ({"kind": "x' OR '1'='1"}, []),
    ({"x') OR '1'='1": 5}, ["d"]),
    ({"x') OR '1'='1": 6}, []),
    ({"kind') OR 1=1 --": "x"}, []),
    ({"%": "x"}, []),
    ({"kind": "%"}, []),
    ({"kind": "X"}, []),
]


@pytest.mark.parametrize(("flt", "expected"), FILTERS, ids=[repr(f)[:40] for f, _ in FILTERS])
async def test_metadata_filters(
    checkpointer: HistoryCheckpointer[Counter], flt: dict[str, Any], expected: list[str]
) -> None:
    for step, (tid, meta) in enumerate(METADATA.items()):
        await checkpointer.save(make_cp("t", step, metadata=meta), thread_metadata=meta)
        await checkpointer.save(make_cp(tid, 0), thread_metadata=meta)
    step_of = {tid: step for step, tid in enumerate(METADATA)}
    listed = await checkpointer.list_checkpoints("t", filter=flt)
    assert [m.step for m in listed] == [step_of[t] for t in expected]
    threads = await checkpointer.list_threads(filter=flt)
    assert [t.thread_id for t in threads] == expected


async def test_huge_limits_mean_no_limit(checkpointer: HistoryCheckpointer[Counter]) -> None:
    for step in range(3):
        await checkpointer.save(make_cp("t", step))
    for limit in (2**63 - 1, 2**63, 2**100):
        assert [m.step for m in await checkpointer.list_checkpoints("t", limit=limit)] == [0, 1, 2]
        assert [t.thread_id for t in await checkpointer.list_threads(limit=limit)] == ["t"]


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**100])
async def test_integers_beyond_64_bits_in_metadata_or_filters_are_refused(
    checkpointer: HistoryCheckpointer[Counter], value: int
) -> None:
    """SQLite's JSON functions would compare them as inexact floats: refused on every backend."""
    await checkpointer.save(make_cp("t", 0, metadata={"n": 2**63 - 1}))
    before = await snapshot(checkpointer)
    with pytest.raises(SerializationError):
        await checkpointer.save(make_cp("t", 1, metadata={"n": [value]}))
    with pytest.raises(SerializationError):
        await checkpointer.save(make_cp("t", 1), thread_metadata={"n": {"deep": value}})
    with pytest.raises(SerializationError):
        await checkpointer.set_thread_metadata("t", {"n": value})
    with pytest.raises(InvalidInput):
        await checkpointer.list_checkpoints("t", filter={"n": value})
    with pytest.raises(InvalidInput):
        await checkpointer.list_threads(filter={"n": {"deep": value}})
    assert await snapshot(checkpointer) == before
    # The edges of the range are stored and matched exactly.
    assert [m.step for m in await checkpointer.list_checkpoints("t", filter={"n": 2**63 - 1})] == [
        0
    ]
    assert await checkpointer.list_checkpoints("t", filter={"n": 2**63 - 2}) == []
    assert await checkpointer.list_checkpoints("t", filter={"n": -(2**63)}) == []
