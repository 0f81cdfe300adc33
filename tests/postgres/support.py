"""The PostgreSQL server the tests use: one database per test run, one schema per store.

The server is named by ``FORKPOINT_TEST_POSTGRES`` (default: the local server,
``postgresql://postgres@127.0.0.1:5432/test``). The first test that needs it
creates a database of its own there, ``forkpoint_test_<pid>_<random>``, and
the process drops it when it exits; every store (a test's checkpointers, one
contract backend) gets its own schema inside it. When no server is reachable the
tests that need one are skipped with the reason — unless
``FORKPOINT_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), which makes that a failure.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from forkpoint import HistoryCheckpointer, StateSchema
from forkpoint.postgres import PostgresCheckpointer

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"

_state: dict[str, Any] = {}


def server_url() -> str:
    """The server the tests were pointed at (its database is only used to create ours)."""
    return os.environ.get("FORKPOINT_TEST_POSTGRES") or DEFAULT_SERVER


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def unavailable(reason: str) -> None:
    """Skip the test, saying why; fail it instead when the run requires PostgreSQL."""
    message = f"PostgreSQL tests need a server ({server_url()}): {reason}"
    if os.environ.get("FORKPOINT_REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " (FORKPOINT_REQUIRE_POSTGRES=1)", pytrace=False)
    pytest.skip(reason=message)


async def run_database() -> str:
    """The URL of this run's own database, created on first use (skips if no server)."""
    if "url" in _state:
        return str(_state["url"])
    if "error" in _state:
        unavailable(_state["error"])
    name = f"forkpoint_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(server_url(), timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        _state["error"] = f"{type(exc).__name__}: {exc}"
        unavailable(_state["error"])
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    _state["url"] = _with_database(server_url(), name)
    atexit.register(_drop, name)
    return str(_state["url"])


def _drop(name: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(server_url(), timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def schema_for(folder: Path) -> str:
    """A schema name of its own for a store living in ``folder`` (a test's tmp_path)."""
    return "s_" + hashlib.blake2b(str(folder).encode(), digest_size=12).hexdigest()


async def open_store(
    folder: Path, state_type: type[StateSchema], **kw: Any
) -> HistoryCheckpointer[Any]:
    """The contract suite's factory: a PostgresCheckpointer on the store of ``folder``."""
    url = await run_database()
    kw.setdefault("schema", schema_for(folder))
    kw.setdefault("pool_size", 4)
    return await PostgresCheckpointer.open(url, state_type, **kw)
