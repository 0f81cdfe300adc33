"""forkpoint's contender: ``SqliteCheckpointer`` as a user opens it."""

from __future__ import annotations

import sqlite3
from typing import Any

from forkpoint import Checkpoint, GraphState, SqliteCheckpointer
from forkpoint.sqlite import Durability

from .state import BenchState

__all__ = ["ForkpointStore"]


def _nothing(_conn: sqlite3.Connection) -> None:
    return None


class _ReaderBeforeVersions:
    """Decoding as it was before state versions: pydantic's own validator on the stored text.

    W4 loads the same database through this and through forkpoint's own
    reader, so the row "forkpoint vs the same load without versions" is the
    whole cost of versioning on a current-version row.
    """

    def __init__(self, state_type: type[BenchState]) -> None:
        self.state_type = state_type
        self.version = state_type.state_version
        self.any_version = False

    def read(self, text: str, stored_version: int, **_where: Any) -> BenchState:
        return self.state_type.model_validate_json(text)


class ForkpointStore:
    """A thin adapter: the workloads call the public API and nothing else."""

    supports_fork = True

    def __init__(self, cp: SqliteCheckpointer[BenchState]) -> None:
        self.cp = cp

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        durability: Durability = "full",
        keep_last: int | None = None,
        versions: bool = True,
    ) -> ForkpointStore:
        if durability == "full" and keep_last is None:
            cp = await SqliteCheckpointer.open(path, BenchState)  # the defaults
        else:
            cp = await SqliteCheckpointer.open(
                path, BenchState, durability=durability, keep_last=keep_last
            )
        if not versions:  # the baseline of W4's versioning row (bench-only, private on purpose)
            cp._codec._reader = _ReaderBeforeVersions(BenchState)  # type: ignore[assignment]
        return cls(cp)

    def prepare(
        self, thread_id: str, states: list[BenchState], first_step: int = 0
    ) -> list[Checkpoint[BenchState]]:
        """The checkpoints a run would hand to ``save`` (built before the clock starts)."""
        return [
            Checkpoint[BenchState](
                thread_id=thread_id,
                state=GraphState[BenchState](data=state),
                step=first_step + i,
                node="node",
            )
            for i, state in enumerate(states)
        ]

    async def save(self, item: Checkpoint[BenchState]) -> None:
        await self.cp.save(item)

    async def load(self, thread_id: str) -> Any:
        return await self.cp.load(thread_id)

    async def list(self, thread_id: str) -> int:
        return len(await self.cp.list_checkpoints(thread_id))

    async def hop(self) -> None:
        """One round trip to the reader's connection thread doing nothing (W4's floor)."""
        await self.cp.engine.read(_nothing)

    async def fork(self, thread_id: str, at_step: int, new_thread_id: str) -> None:
        await self.cp.fork(thread_id, at_step, new_thread_id=new_thread_id)

    async def close(self) -> None:
        await self.cp.close()
