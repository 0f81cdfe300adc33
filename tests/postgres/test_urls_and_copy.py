"""One URL everywhere (open_checkpointer) and copy_threads between any two backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forkpoint import (
    CheckpointNotFound,
    InMemoryCheckpointer,
    InvalidInput,
    SqliteCheckpointer,
    ThreadExists,
    copy_threads,
    open_checkpointer,
)
from forkpoint.postgres import PostgresCheckpointer
from tests.conftest import Counter, make_cp
from tests.postgres.test_storage import _grown


async def test_a_postgresql_url_opens_postgres(pg_url: str, schema: str) -> None:
    async with open_checkpointer(pg_url, Counter, schema=schema, keep_last=5) as cp:
        assert isinstance(cp, PostgresCheckpointer)
        await cp.save(make_cp("t", 0))
    postgres_url = "postgres://" + pg_url.split("://", 1)[1]
    cp = await open_checkpointer(postgres_url, Counter, schema=schema)
    assert isinstance(cp, PostgresCheckpointer)
    assert [m.step for m in await cp.list_checkpoints("t")] == [0]
    await cp.close()


async def test_sqlite_urls_and_plain_paths_open_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases: list[tuple[str | Path, Path]] = [
        ("sqlite:///rel.db", tmp_path / "rel.db"),
        (f"sqlite:///{tmp_path}/abs.db", tmp_path / "abs.db"),
        ("plain.db", tmp_path / "plain.db"),
        (tmp_path / "pathlike.db", tmp_path / "pathlike.db"),
    ]
    for target, file in cases:
        async with open_checkpointer(target, Counter, durability="normal") as cp:
            assert isinstance(cp, SqliteCheckpointer)
            assert Path(cp.path) == file
        assert file.exists()


@pytest.mark.parametrize(
    ("target", "options", "needle"),
    [
        ("mysql://x/y", {}, "scheme 'mysql'"),
        ("sqlite://rel.db", {}, "sqlite:///"),
        ("sqlite:///", {}, "sqlite:///"),
        (42, {}, "int"),
        ("x.db", {"schema": "s"}, "no option schema"),
        ("postgresql://u@h/db", {"busy_timeout": 1}, "no option busy_timeout"),
    ],
)
async def test_what_open_checkpointer_refuses(
    target: Any, options: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InvalidInput, match=needle):
        open_checkpointer(target, Counter, **options)


async def _history(cp: Any) -> list[Any]:
    out = []
    for info in await cp.list_threads():
        rows = [
            await cp.get(info.thread_id, m.step) for m in await cp.list_checkpoints(info.thread_id)
        ]
        out.append((info.model_dump(), [r.model_dump() for r in rows]))
    return out


async def test_copy_moves_threads_whole_from_sqlite_to_postgres_and_back(
    tmp_path: Path, pg_url: str, schema: str
) -> None:
    async with SqliteCheckpointer.open(tmp_path / "local.db", Counter) as local:
        for step in range(12):
            await local.save(_grown("grows", step), thread_metadata={"owner": "ann"})
        for step in range(3):
            await local.save(make_cp("small", step, metadata={"k": step}))
        await local.fork("grows", 7, new_thread_id="alt")
        await local.save(_grown("alt", 8).model_copy(update={"node": "other"}))
        before = await _history(local)
        async with PostgresCheckpointer.open(pg_url, Counter, schema=schema) as shared:
            assert await copy_threads(local, shared) == ["alt", "grows", "small"]
            assert await _history(shared) == before
            info = await shared.thread_info("alt")
            assert info is not None
            assert (info.parent_thread_id, info.parent_step) == ("grows", 7)
            with pytest.raises(ThreadExists) as exists:
                await copy_threads(local, shared, ["small"])
            assert exists.value.thread_id == "small"
            back = InMemoryCheckpointer(Counter)
            seen: list[str] = []
            copied = await copy_threads(
                shared, back, ["small", "grows"], progress=lambda i: seen.append(i.thread_id)
            )
            assert copied == seen == ["small", "grows"]
            assert await _history(back) == [h for h in before if h[0]["thread_id"] != "alt"]
            with pytest.raises(CheckpointNotFound):
                await copy_threads(shared, InMemoryCheckpointer(Counter), ["nope"])
            with pytest.raises(InvalidInput):
                await copy_threads(shared, shared)
            with pytest.raises(InvalidInput):
                await copy_threads(shared, back, "small")
