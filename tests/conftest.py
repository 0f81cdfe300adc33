"""Shared fixtures: every backend by name, and the state model the suites use.

A backend joins the contract suite by adding a factory to ``BACKENDS``; tests
ask for ``make_checkpointer`` (a factory, for tests that need several) or
``checkpointer`` (one, opened and closed for the test).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field

from forkpoint import (
    Append,
    Checkpoint,
    GraphState,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    SqliteCheckpointer,
    StateSchema,
)
from forkpoint.migrate import upgrade
from tests.postgres.support import open_store as _postgres
from tests.sync_face import over_sync


class Counter(StateSchema):
    """The seed's test state, plus a list so reducers and sizes can be exercised."""

    n: int = 0
    log: Annotated[list[str], Append] = Field(default_factory=list)


def make_cp(
    thread_id: str, step: int, *, n: int | None = None, node: str = "node", **kw: Any
) -> Checkpoint[Counter]:
    """The seed's ``make_cp``: a checkpoint whose counter equals its step."""
    return Checkpoint[Counter](
        thread_id=thread_id,
        state=GraphState[Counter](data=Counter(n=step if n is None else n)),
        step=step,
        node=node,
        **kw,
    )


Factory = Callable[..., Awaitable[HistoryCheckpointer[Any]]]


async def _memory(
    tmp_path: Path, state_type: type[StateSchema] = Counter, **kw: Any
) -> HistoryCheckpointer[Any]:
    return InMemoryCheckpointer(state_type, **kw)


_TEMPLATE: list[Path] = []


def _migrated_template() -> Path:
    """A freshly created, closed database, made once per test session.

    Hundreds of contract tests copy this file instead of creating their own.
    Creation and migration themselves are tested in tests/sqlite.
    """
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="forkpoint-template-"))
        path = folder / "template.db"
        upgrade(str(path))
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def build_with_scripts(path: Path, revision: str = "head") -> None:
    """A database migrated by the alembic scripts to ``revision`` (from whatever it holds).

    forkpoint itself creates a new file from ``migrate.HEAD_SQL``; this is the
    scripts' own build, which the tests compare it (and ``_schema.SCHEMAS``) with.
    """
    from alembic import command

    from forkpoint.migrate import alembic_config, prepare_new_file, sqlalchemy_engine

    prepare_new_file(str(path))
    engine = sqlalchemy_engine(str(path), busy_timeout=5.0)
    try:
        with engine.connect() as conn, conn.begin():
            config = alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
    finally:
        engine.dispose()


async def _sqlite(
    tmp_path: Path, state_type: type[StateSchema] = Counter, **kw: Any
) -> HistoryCheckpointer[Any]:
    path = tmp_path / "forkpoint.db"
    if not path.exists():
        shutil.copyfile(_migrated_template(), path)
    return await SqliteCheckpointer.open(path, state_type, **kw)


async def _sync_sqlite(
    tmp_path: Path, state_type: type[StateSchema] = Counter, **kw: Any
) -> HistoryCheckpointer[Any]:
    """SQLite driven through ``forkpoint.sync``'s plain calls (see tests/sync_face.py)."""
    return await over_sync(lambda: _sqlite(tmp_path, state_type, **kw))


BACKENDS: dict[str, Callable[..., Awaitable[HistoryCheckpointer[Any]]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
    "sync": _sync_sqlite,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_checkpointer(backend_name: str, tmp_path: Path) -> AsyncIterator[Factory]:
    """Opens checkpointers of the parametrised backend (all on one store for SQLite); closes them."""
    opened: list[HistoryCheckpointer[Any]] = []

    async def factory(
        state_type: type[StateSchema] = Counter, **kw: Any
    ) -> HistoryCheckpointer[Any]:
        cp = await BACKENDS[backend_name](tmp_path, state_type, **kw)
        opened.append(cp)
        return cp

    yield factory
    for cp in opened:
        await cp.close()


@pytest.fixture
async def checkpointer(make_checkpointer: Factory) -> HistoryCheckpointer[Counter]:
    return await make_checkpointer()
