"""Metadata filters never put a user string into SQL text, not even as a JSON path."""

from __future__ import annotations

from typing import Any

from tests.conftest import make_cp

HOSTILE = [
    "x') OR '1'='1",
    "$.a",
    '"; DROP TABLE checkpoints; --',
    "%_",
    "key with spaces",
    "ünï✓",
    "a.b[0]",
]


async def test_hostile_filter_keys_and_values_never_become_sql_text(recorded: Any) -> None:
    cp, seen, traced = recorded
    for i, key in enumerate(HOSTILE):
        await cp.save(
            make_cp(f"t{i}", 0, metadata={key: key, "nested": {key: i}}), thread_metadata={key: i}
        )
    for i, key in enumerate(HOSTILE):
        by_value = await cp.list_checkpoints(f"t{i}", filter={key: key})
        assert [m.step for m in by_value] == [0]
        nested = await cp.list_checkpoints(f"t{i}", filter={"nested": {key: i}})
        assert [m.step for m in nested] == [0]
        threads = await cp.list_threads(filter={key: i})
        assert [t.thread_id for t in threads] == [f"t{i}"]
        assert await cp.list_checkpoints(f"t{i}", filter={key: "other"}) == []
    assert await cp.list_threads(filter={"x') OR '1'='1": "anything"}) == []
    assert seen, "the recorder saw no statement"
    for sql in seen:
        for key in HOSTILE:
            assert key not in sql, sql
    # The driver's own trace (bound values expanded) shows the quote-laden key only
    # as an escaped literal ('' for '), never in the raw form that would end a string.
    assert traced
    assert any("x'') OR ''1''=''1" in sql for sql in traced)
    for sql in traced:
        assert "x') OR '1'='1" not in sql


async def test_filters_match_types_exactly(recorded: Any) -> None:
    cp, _, _ = recorded
    await cp.save(make_cp("t", 0, metadata={"flag": True, "n": 1, "x": None, "f": 1.5, "s": "1"}))
    assert len(await cp.list_checkpoints("t", filter={"flag": True})) == 1
    assert await cp.list_checkpoints("t", filter={"flag": 1}) == []
    assert await cp.list_checkpoints("t", filter={"n": True}) == []
    assert len(await cp.list_checkpoints("t", filter={"n": 1.0})) == 1
    assert await cp.list_checkpoints("t", filter={"s": 1}) == []
    assert len(await cp.list_checkpoints("t", filter={"x": None})) == 1
    assert await cp.list_checkpoints("t", filter={"missing": None}) == []
