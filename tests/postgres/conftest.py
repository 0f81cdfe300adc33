"""Fixtures of the PostgreSQL tests: this run's database, a schema per test, a direct connection."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from forkpoint.postgres import PostgresCheckpointer
from tests.conftest import Counter
from tests.postgres.support import run_database, schema_for

Opener = Callable[..., Awaitable[PostgresCheckpointer[Any]]]
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tier (``soak``) of these tests runs only under ``make soak``."""
    if os.environ.get("FORKPOINT_SOAK") == "1":
        return
    dropped = [
        item
        for item in items
        if item.get_closest_marker("soak")
        and Path(str(item.fspath)).resolve().is_relative_to(_HERE)
    ]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture
async def pg_url() -> str:
    """This run's database (skipped, with the reason, when no server is reachable)."""
    return await run_database()


@pytest.fixture
def schema(tmp_path: Path) -> str:
    """A schema of this test's own."""
    return schema_for(tmp_path)


@pytest.fixture
async def admin(pg_url: str, schema: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database, for looking behind the checkpointer.

    Its ``search_path`` is the test's schema, so tests name forkpoint's tables plainly.
    """
    conn = await asyncpg.connect(pg_url, server_settings={"search_path": f'"{schema}"'})
    yield conn
    await conn.close()


@pytest.fixture
async def open_pg(pg_url: str, schema: str) -> AsyncIterator[Opener]:
    """Opens checkpointers on this test's schema (Counter state by default); closes them."""
    opened: list[PostgresCheckpointer[Any]] = []

    async def opener(state_type: Any = Counter, **kw: Any) -> PostgresCheckpointer[Any]:
        kw.setdefault("schema", schema)
        cp = await PostgresCheckpointer.open(kw.pop("url", pg_url), state_type, **kw)
        opened.append(cp)
        return cp

    yield opener
    for cp in opened:
        await cp.close()
