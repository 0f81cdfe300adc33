"""Crafted rows are typed errors: wrong SQL types, JSON nested past any stack, times past year 1 or 9999.

Every read that builds a model from a row (``load``, ``get``, the listings,
``thread_info``) either returns exactly what was saved or raises
``SerializationError`` naming the thread (and the step, where there is one).
The command line, which reads through those calls, prints one line instead of
a traceback. A second group holds the pydantic internals forkpoint depends on
to what it needs from them, so a pydantic release that changes one fails here.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from forkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointMetadata,
    GraphState,
    InvalidInput,
    JsonState,
    SerializationError,
    SqliteCheckpointer,
    StateSchema,
    ThreadInfo,
)
from tests.conftest import Counter, Factory, make_cp
from tests.reliability.support import ROOT, child_env

# --- crafting ------------------------------------------------------------------------------


def _edit(path: Path, sql: str, *params: object) -> None:
    """Change the file behind forkpoint's back, as another tool could."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute(sql, params).rowcount >= 1, sql
    finally:
        conn.close()


async def _three_steps(path: Path) -> None:
    async with SqliteCheckpointer.open(path, Counter) as cp:
        for step in range(3):
            await cp.save(make_cp("t", step), thread_metadata={"owner": "x"})
        await cp.save(make_cp("bystander", 0))


Read = Callable[[SqliteCheckpointer[Any]], Awaitable[object]]

READS: dict[str, Read] = {
    "load": lambda cp: cp.load("t"),
    "get": lambda cp: cp.get("t", 2),
    "list_checkpoints": lambda cp: cp.list_checkpoints("t"),
    "list_threads": lambda cp: cp.list_threads(),
    "thread_info": lambda cp: cp.thread_info("t"),
}


async def _all(items: AsyncIterator[object]) -> list[object]:
    return [item async for item in items]


async def _outcome(read: Awaitable[object]) -> object:
    """What a read returned, or the exception it raised (whatever its kind)."""
    try:
        return await read
    except BaseException as exc:  # noqa: BLE001 - the point: which kind escapes
        return exc


async def _each_read_is_a_serialization_error(path: Path, reads: list[str]) -> None:
    async with SqliteCheckpointer.open(path, Counter) as cp:
        for name in reads:
            got = await _outcome(READS[name](cp))
            assert isinstance(got, SerializationError), f"{name}() gave {got!r}"[:500]
            # The error names the row's thread, as text even when the file stores bytes.
            assert got.thread_id in ("t", "b't'"), (name, got)
            assert got.path == str(path), (name, got)
        # The rest of the file still reads.
        other = await cp.load("bystander")
        assert other is not None
        assert other.step == 0


# --- item 4: SQL types ---------------------------------------------------------------------

# Values the column's affinity would convert (7 into a TEXT column becomes '7') are no test:
# only values SQLite stores as given (text in an INTEGER column, any BLOB) reach forkpoint.
TYPED_ROWS = {
    # (UPDATE statement, its parameters, the reads that must refuse the row)
    "step-text": (
        "UPDATE checkpoints SET step = 'abc' WHERE thread_id = 't' AND step = 2",
        (),
        ["load", "list_checkpoints"],
    ),
    "step-real": (
        "UPDATE checkpoints SET step = 2.5 WHERE thread_id = 't' AND step = 2",
        (),
        ["load", "list_checkpoints"],
    ),
    "node-blob": (
        "UPDATE checkpoints SET node = ? WHERE thread_id = 't' AND step = 2",
        (b"\x00\xff",),
        ["load", "get", "list_checkpoints"],
    ),
    "created-at-blob": (
        "UPDATE checkpoints SET created_at = ? WHERE thread_id = 't' AND step = 2",
        (b"2026-01-01T00:00:00.000000Z",),
        ["load", "get", "list_checkpoints"],
    ),
    "metadata-blob": (
        "UPDATE checkpoints SET metadata = ? WHERE thread_id = 't' AND step = 2",
        (b"{}",),
        ["load", "get", "list_checkpoints"],
    ),
    "thread-id-blob": (
        "UPDATE threads SET thread_id = ? WHERE thread_id = 't'",
        (b"t",),
        ["list_threads"],
    ),
    "checkpoint-count-text": (
        "UPDATE threads SET checkpoint_count = 'many' WHERE thread_id = 't'",
        (),
        ["list_threads", "thread_info"],
    ),
    "latest-step-real": (
        "UPDATE threads SET latest_step = 2.5 WHERE thread_id = 't'",
        (),
        ["list_threads", "thread_info"],
    ),
    "parent-step-text": (
        "UPDATE threads SET parent_thread_id = 'p', parent_step = 'x' WHERE thread_id = 't'",
        (),
        ["list_threads", "thread_info"],
    ),
    "parent-id-blob": (
        "UPDATE threads SET parent_thread_id = ?, parent_step = 0 WHERE thread_id = 't'",
        (b"p",),
        ["list_threads", "thread_info"],
    ),
    "updated-at-blob": (
        "UPDATE threads SET updated_at = ? WHERE thread_id = 't'",
        (b"2026-01-01T00:00:00.000000Z",),
        ["list_threads", "thread_info"],
    ),
    # TEXT that is not UTF-8: SQLite stores it as given; the driver cannot make a str of it.
    "node-not-utf8": (
        "UPDATE checkpoints SET node = CAST(X'6eff' AS TEXT) WHERE thread_id = 't' AND step = 2",
        (),
        ["load", "get", "list_checkpoints", "list_threads", "thread_info"],
    ),
    "state-not-utf8": (
        "UPDATE checkpoints SET state = CAST(X'7bff7d' AS TEXT) WHERE thread_id = 't' AND step = 2",
        (),
        ["load", "get"],
    ),
    "queue-not-utf8": (
        "UPDATE checkpoints SET queue = CAST(X'5bff5d' AS TEXT) WHERE thread_id = 't' AND step = 2",
        (),
        ["load", "get", "list_checkpoints", "list_threads", "thread_info"],
    ),
    "created-at-not-utf8": (
        "UPDATE checkpoints SET created_at = CAST(X'32ff' AS TEXT) "
        "WHERE thread_id = 't' AND step = 1",
        (),
        ["list_checkpoints"],
    ),
    "thread-metadata-not-utf8": (
        "UPDATE threads SET metadata = CAST(X'7bff7d' AS TEXT) WHERE thread_id = 't'",
        (),
        ["list_threads", "thread_info"],
    ),
    "parent-id-not-utf8": (
        "UPDATE threads SET parent_thread_id = CAST(X'70ff' AS TEXT), parent_step = 0 "
        "WHERE thread_id = 't'",
        (),
        ["list_threads", "thread_info"],
    ),
}


@pytest.mark.parametrize("case", sorted(TYPED_ROWS))
async def test_a_row_of_wrong_sql_types_is_a_serialization_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / "typed.db"
    await _three_steps(path)
    sql, params, reads = TYPED_ROWS[case]
    _edit(path, sql, *params)
    await _each_read_is_a_serialization_error(path, reads)


# --- item 9: JSON nested past the stack ----------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000

NESTED_ROWS = {
    "state": (
        "UPDATE checkpoints SET state = ? WHERE thread_id = 't' AND step = 2",
        ["load", "get"],
    ),
    "queue": (
        "UPDATE checkpoints SET queue = ? WHERE thread_id = 't' AND step = 2",
        ["load", "get"],
    ),
    "metadata": (
        "UPDATE checkpoints SET metadata = ? WHERE thread_id = 't' AND step = 2",
        ["load", "get", "list_checkpoints"],
    ),
    "thread-metadata": (
        "UPDATE threads SET metadata = ? WHERE thread_id = 't'",
        ["list_threads", "thread_info"],
    ),
}


@pytest.mark.parametrize("text", [DEEP, DEEP_OBJECT], ids=["arrays", "objects"])
@pytest.mark.parametrize("column", sorted(NESTED_ROWS))
async def test_json_nested_past_the_stack_is_a_serialization_error(
    tmp_path: Path, column: str, text: str
) -> None:
    path = tmp_path / "deep.db"
    await _three_steps(path)
    sql, reads = NESTED_ROWS[column]
    _edit(path, sql, text)
    await _each_read_is_a_serialization_error(path, reads)


async def test_nested_state_json_of_a_float_state_is_a_serialization_error(tmp_path: Path) -> None:
    """JsonState (what the CLI reads with) scans states for NaN first: that scan must not recurse away."""
    path = tmp_path / "deep-json.db"
    async with SqliteCheckpointer.open(path, JsonState) as cp:
        await cp.save(
            Checkpoint[JsonState](
                thread_id="t", state=GraphState[JsonState](data=JsonState()), step=0, node="n"
            )
        )
    deep = '{"text": "NaN", "x": ' + DEEP + "}"  # the word NaN makes the scan parse the text
    _edit(path, "UPDATE checkpoints SET state = ? WHERE thread_id = 't'", deep)
    async with SqliteCheckpointer.open(path, JsonState) as cp:
        with pytest.raises(SerializationError):
            await cp.load("t")
        with pytest.raises(SerializationError):
            await cp.get("t", 0)


def _cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from forkpoint.cli import main; main()", "--db", str(path), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**child_env(), "FORKPOINT_PROGRESS": "never"},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("state", '{"text": "NaN", "n": ' + DEEP + "}"),
        ("metadata", DEEP_OBJECT),
        ("created_at", "0001-01-01T00:00:00+01:00"),
    ],
)
async def test_cli_reports_such_rows_in_one_line(tmp_path: Path, column: str, value: str) -> None:
    """check names the damage (exit 1); history/show/export fail in one line; none has a traceback."""
    path = tmp_path / "cli-deep.db"
    await _three_steps(path)
    # S608: the column name comes from the parameter list above, not from input.
    _edit(path, f"UPDATE checkpoints SET {column} = ? WHERE thread_id = 't' AND step = 2", value)  # noqa: S608
    check = _cli(path, "check")
    assert check.returncode == 1, check
    assert "Traceback" not in check.stderr, check.stderr[-2000:]
    assert "'t'" in check.stdout + check.stderr
    for args in (["history", "t"], ["show", "t", "2"], ["export", "t"], ["show", "t"]):
        done = _cli(path, *args)
        assert "Traceback" not in done.stderr, (args, done.stderr[-2000:])
        if done.returncode != 0:
            assert done.returncode == 1, (args, done)
            assert done.stderr.startswith("forkpoint: error: "), (args, done.stderr[-500:])
            assert len(done.stderr.strip().splitlines()) == 1, (args, done.stderr[-500:])


# --- item 10: times that overflow ----------------------------------------------------------

EARLY = "0001-01-01T00:00:00+01:00"  # valid ISO 8601; in UTC it would be year 0
LATE = "9999-12-31T23:59:59-01:00"  # in UTC it would be year 10000

TIME_ROWS = {
    "checkpoint": (
        "UPDATE checkpoints SET created_at = ? WHERE thread_id = 't' AND step = 2",
        ["load", "get", "list_checkpoints"],
    ),
    "thread-created": (
        "UPDATE threads SET created_at = ? WHERE thread_id = 't'",
        ["list_threads", "thread_info"],
    ),
    "thread-updated": (
        "UPDATE threads SET updated_at = ? WHERE thread_id = 't'",
        ["list_threads", "thread_info"],
    ),
}


@pytest.mark.parametrize("value", [EARLY, LATE], ids=["year-0", "year-10000"])
@pytest.mark.parametrize("where", sorted(TIME_ROWS))
async def test_a_stored_time_that_overflows_is_a_serialization_error(
    tmp_path: Path, where: str, value: str
) -> None:
    path = tmp_path / "time.db"
    await _three_steps(path)
    sql, reads = TIME_ROWS[where]
    _edit(path, sql, value)
    await _each_read_is_a_serialization_error(path, reads)


PLUS_ONE = timezone(timedelta(hours=1))
MINUS_ONE = timezone(timedelta(hours=-1))
OVERFLOWING = [
    datetime(1, 1, 1, tzinfo=PLUS_ONE),
    datetime(9999, 12, 31, 23, 59, 59, tzinfo=MINUS_ONE),
]


@pytest.mark.parametrize("when", OVERFLOWING, ids=["year-0", "year-10000"])
def test_a_checkpoint_whose_time_overflows_in_utc_is_a_validation_error(when: datetime) -> None:
    """Like every other bad field of the model: pydantic's ValidationError, never OverflowError."""
    with pytest.raises(ValidationError, match="created_at"):
        make_cp("t", 0, created_at=when)


@pytest.mark.parametrize("when", OVERFLOWING, ids=["year-0", "year-10000"])
async def test_saving_a_time_that_overflows_in_utc_is_invalid_input(
    make_checkpointer: Factory, when: datetime
) -> None:
    """A time set after construction (no validation on assignment) is refused by save, nothing stored."""
    cp = await make_checkpointer()
    checkpoint = make_cp("t", 0)
    checkpoint.created_at = when
    with pytest.raises(InvalidInput, match="created_at"):
        await cp.save(checkpoint)
    assert await cp.load("t") is None


@pytest.mark.parametrize("when", OVERFLOWING, ids=["year-0", "year-10000"])
async def test_restoring_a_thread_whose_times_overflow_is_invalid_input(
    make_checkpointer: Factory, when: datetime
) -> None:
    cp = await make_checkpointer()
    info = ThreadInfo(
        thread_id="t",
        created_at=when,
        updated_at=datetime.now(UTC),
        latest_step=0,
        checkpoint_count=1,
    )
    with pytest.raises(CheckpointError):
        await cp.restore_thread(info, [make_cp("t", 0)])
    assert await cp.load("t") is None


def test_the_earliest_and_latest_times_that_fit_still_work() -> None:
    """The guard refuses overflow only: year 1 and year 9999 in UTC are accepted as they are."""
    for when in (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)):
        assert make_cp("t", 0, created_at=when).created_at == when
    shifted = datetime(1, 1, 1, 2, tzinfo=PLUS_ONE)
    assert make_cp("t", 0, created_at=shifted).created_at == datetime(1, 1, 1, 1, tzinfo=UTC)


# --- the pydantic internals forkpoint relies on ---------------------------------------------


class _Inner(BaseModel):
    f: float = 0.0
    a: Any = None


class _Outer(StateSchema):
    inner: _Inner = _Inner()
    items: list[_Inner] = Field(default_factory=list)


def _checkpoint(state: _Outer) -> Checkpoint[_Outer]:
    return Checkpoint[_Outer](thread_id="t", state=GraphState[_Outer](data=state), step=0, node="n")


@pytest.mark.parametrize(
    ("state", "where"),
    [
        (lambda: _Outer(inner=_Inner(f=math.nan)), "NaN"),
        (lambda: _Outer(items=[_Inner(), _Inner(f=math.inf)]), "NaN"),
        (lambda: _Outer(inner=_Inner(a={"k": {1, 2}})), ".a.k"),
        (lambda: _Outer(items=[_Inner(a=(1, 2))]), "tuple at .a"),
    ],
    ids=["nan-nested", "inf-in-list-of-models", "set-in-nested-any", "tuple-in-listed-any"],
)
async def test_strict_encoding_reaches_nested_models(
    make_checkpointer: Factory, state: Callable[[], _Outer], where: str
) -> None:
    """Guards ``_use_prebuilt=False`` and the core-schema rewrite (forkpoint._pydantic).

    If pydantic-core reused a nested model's own serializer again, or renamed
    the schema keys the rewrite follows, these values would be stored silently
    changed (NaN as null, a set as a list) instead of refused.
    """
    cp = await make_checkpointer(_Outer)
    with pytest.raises(SerializationError, match=re.escape(where)):
        await cp.save(_checkpoint(state()))
    assert await cp.load("t") is None


def test_the_fast_constructor_builds_what_model_construct_builds() -> None:
    """Guards the direct ``__dict__`` writes (forkpoint._pydantic.construct) for every listing model."""
    from forkpoint._pydantic import construct

    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    meta_values: dict[str, Any] = {
        name: field.get_default(call_default_factory=True)
        for name, field in CheckpointMetadata.model_fields.items()
    }
    meta_values.update(step=5, created_at=when, node="n", metadata={"a": [1]})
    info_values: dict[str, Any] = {
        name: field.get_default(call_default_factory=True)
        for name, field in ThreadInfo.model_fields.items()
    }
    info_values.update(
        thread_id="t", created_at=when, updated_at=when, latest_step=3, checkpoint_count=4
    )
    for cls, values in ((CheckpointMetadata, meta_values), (ThreadInfo, info_values)):
        fast = construct(cls, dict(values))
        slow = cls.model_construct(**values)
        assert fast == slow
        assert fast.model_fields_set == slow.model_fields_set
        assert fast.model_dump() == slow.model_dump()
        assert fast.model_dump_json() == slow.model_dump_json()
        assert repr(fast) == repr(slow)
        assert fast.__pydantic_extra__ == slow.__pydantic_extra__
        assert fast.__pydantic_private__ == slow.__pydantic_private__
        assert fast.model_copy(update={"created_at": when}) == slow
        # A model rebuilt from a dump validates to the same thing.
        assert type(fast).model_validate(fast.model_dump()) == slow


def test_every_pydantic_internal_is_held_in_one_module() -> None:
    """No module but forkpoint._pydantic names a private pydantic interface or writes __dict__."""
    src = ROOT / "src" / "forkpoint"
    needles = ("_use_prebuilt", "__pydantic_fields_set__", '"__dict__"', "__pydantic_private__")
    offenders = [
        f"{path.relative_to(src)}: {needle}"
        for path in src.rglob("*.py")
        if path.name != "_pydantic.py"
        for needle in needles
        if needle in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
    assert os.path.exists(src / "_pydantic.py")


# --- a thread id that is not UTF-8 ------------------------------------------------------------


async def test_a_state_that_is_not_utf8_is_its_bytes_raw_and_an_error_decoded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "raw.db"
    await _three_steps(path)
    _edit(path, "UPDATE checkpoints SET state = CAST(X'7bff7d' AS TEXT) WHERE step = 2")
    async with SqliteCheckpointer.open(path, Counter) as cp:
        assert await cp.get_raw("t", 2) == b"{\xff}"
        walked = await _outcome(_all(cp.iter_states("t")))
        assert isinstance(walked, SerializationError), repr(walked)
        assert (walked.thread_id, walked.step) == ("t", 2)


async def test_a_thread_id_that_is_not_utf8_fails_only_what_names_it(tmp_path: Path) -> None:
    """Reading its record is a SerializationError naming it; every other thread still reads.

    An all-threads prune prunes every other thread (such an id cannot be bound
    as a parameter, so no statement can address its thread).
    """
    path = tmp_path / "utf8.db"
    async with SqliteCheckpointer.open(path, Counter) as cp:
        for step in range(3):
            await cp.save(make_cp("good", step))
            await cp.save(make_cp("bad", step))
            await cp.save(make_cp("z-last", step))
    for table in ("threads", "checkpoints"):
        # S608: the table name comes from the tuple above.
        _edit(path, f"UPDATE {table} SET thread_id = CAST(X'67ff' AS TEXT) WHERE thread_id = 'bad'")  # noqa: S608
    named = repr(b"g\xff")
    async with SqliteCheckpointer.open(path, Counter) as cp:
        for listing in (cp.list_threads(), _all(cp.iter_threads(page_size=1))):
            listed = await _outcome(listing)
            assert isinstance(listed, SerializationError), repr(listed)
            assert listed.thread_id == named, listed
            assert listed.path == str(path)
            assert "thread record" in listed.message, listed
            assert "not UTF-8" in listed.message, listed
        # The threads around it: the page before it, and the page after it ("h" is the first
        # id that sorts after the bytes 67 ff).
        assert [t.thread_id for t in await cp.list_threads(limit=1)] == ["good"]
        after = await cp.list_threads(after="h")
        assert [t.thread_id for t in after] == ["z-last"]
        for tid in ("good", "z-last"):
            info = await cp.thread_info(tid)
            assert info is not None
            assert info.latest_step == 2
            loaded = await cp.load(tid)
            assert loaded is not None
            assert loaded.step == 2
        report = await cp.prune(keep_last=1)
        assert report.checkpoints_removed == 4
        assert [m.step for m in await cp.list_checkpoints("good")] == [2]
