"""The fast constructor used by listings builds exactly what pydantic's model_construct builds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from forkpoint import CheckpointMetadata, ThreadInfo
from forkpoint._pydantic import construct
from forkpoint.codec import checkpoint_metadata, decode_json_object, decode_queue, thread_info


def test_construct_equals_model_construct() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    values: dict[str, Any] = {
        "step": 5,
        "created_at": when,
        "node": "n",
        "queue": [("m", 1)],
        "metadata": {"a": [1]},
    }
    fast = construct(CheckpointMetadata, dict(values))
    slow = CheckpointMetadata.model_construct(**values)
    assert fast == slow
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.model_dump() == slow.model_dump()
    assert repr(fast) == repr(slow)


def test_listing_rows_decode_like_validation() -> None:
    meta = checkpoint_metadata(
        3, "2026-01-02T03:04:05.000006Z", "node", '{"k":{"x":true}}', '[["next",0]]'
    )
    assert meta == CheckpointMetadata.model_validate(
        {
            "seq": 3,
            "created_at": "2026-01-02T03:04:05.000006Z",
            "node": "node",
            "queue": [["next", 0]],
            "metadata": {"k": {"x": True}},
        }
    )
    info = thread_info(
        "t",
        "2026-01-02T03:04:05.000006Z",
        "2026-01-03T00:00:00.000000Z",
        4,
        5,
        "p",
        2,
        "{}",
        "last",
        '[["next",0]]',
        '{"interrupt":"before"}',
    )
    assert info == ThreadInfo.model_validate(
        {
            "thread_id": "t",
            "created_at": "2026-01-02T03:04:05.000006Z",
            "updated_at": "2026-01-03T00:00:00Z",
            "latest_step": 4,
            "checkpoint_count": 5,
            "parent_thread_id": "p",
            "parent_step": 2,
            "latest_node": "last",
            "status": "interrupted",
        }
    )


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', "[-Infinity]"])
def test_stored_json_refuses_non_json_constants(text: str) -> None:
    with pytest.raises(ValueError, match="non-JSON constant"):
        decode_json_object(text, "metadata")


def test_decoded_queues_are_fresh_lists_and_damage_is_refused() -> None:
    first = decode_queue('[["a",1],["b",2]]')
    first.append(("c", 3))
    assert decode_queue('[["a",1],["b",2]]') == [("a", 1), ("b", 2)]  # the cache is not shared
    for bad in ('[["a"]]', '[["a","1"]]', '{"a":1}', "[[1,2]]", "not json", 7):
        with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the damage
            decode_queue(bad)
