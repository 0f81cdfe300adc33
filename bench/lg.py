"""LangGraph's contender: ``AsyncSqliteSaver`` used as its documentation shows.

Optional: the ``bench`` extra installs ``langgraph-checkpoint-sqlite``; without
it the harness skips this contender and says so in the report.

Each save is ``aput(config, checkpoint, metadata, new_versions)`` with a
checkpoint built by LangGraph's own helpers (``empty_checkpoint`` then
``create_checkpoint`` per step), whose one channel, ``messages``, holds the
same state as plain dicts (a TypedDict-state graph). Plain dicts are the
cheapest values for its serializer, so LangGraph's numbers are a best case.
"""

from __future__ import annotations

import contextlib
from importlib import metadata
from typing import Any

from .state import BenchState

__all__ = ["LangGraphStore", "available", "version"]


def available() -> tuple[bool, str]:
    """Whether the contender can run, and why not."""
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: F401
    except ImportError as exc:
        return False, f"langgraph-checkpoint-sqlite is not installed ({exc})"
    return True, ""


def version() -> str:
    try:
        return metadata.version("langgraph-checkpoint-sqlite")
    except metadata.PackageNotFoundError:
        return "not installed"


class LangGraphStore:
    """``AsyncSqliteSaver.from_conn_string(path)``, ``aput``, ``aget_tuple``, ``alist``."""

    def __init__(self, saver: Any, stack: contextlib.AsyncExitStack) -> None:
        self.saver = saver
        self._stack = stack
        self._configs: dict[str, dict[str, Any]] = {}
        from langgraph.checkpoint.base import BaseCheckpointSaver

        self.supports_fork = type(saver).acopy_thread is not BaseCheckpointSaver.acopy_thread

    @classmethod
    async def open(cls, path: str) -> LangGraphStore:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        stack = contextlib.AsyncExitStack()
        saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(path))
        await saver.setup()
        return cls(saver, stack)

    def prepare(
        self, thread_id: str, states: list[BenchState], first_step: int = 0
    ) -> list[tuple[str, Any, dict[str, Any], dict[str, Any]]]:
        """(thread, checkpoint, metadata, new_versions) for each ``aput``, chained step by step."""
        from langgraph.checkpoint.base import create_checkpoint, empty_checkpoint

        dumped: dict[int, dict[str, Any]] = {}  # one dict per message object, shared like the state
        prev = empty_checkpoint()
        version: str | None = None
        out = []
        for i, state in enumerate(states):
            step = first_step + i
            seen: dict[str, Any] = {"messages": version} if version is not None else {}
            version = self.saver.get_next_version(version, None)
            cp = create_checkpoint(prev, None, step)
            values = [
                dumped.get(id(m)) or dumped.setdefault(id(m), m.model_dump())
                for m in state.messages
            ]
            cp["channel_values"] = {"messages": values}
            cp["channel_versions"] = {"messages": version}
            cp["versions_seen"] = {"node": seen}
            meta: dict[str, Any] = {"source": "loop", "step": step, "parents": {}}
            out.append((thread_id, cp, meta, {"messages": version}))
            prev = cp
        return out

    async def save(self, item: tuple[str, Any, dict[str, Any], dict[str, Any]]) -> None:
        thread_id, checkpoint, meta, new_versions = item
        config = self._configs.get(thread_id) or {
            "configurable": {"thread_id": thread_id, "checkpoint_ns": ""}
        }
        self._configs[thread_id] = await self.saver.aput(config, checkpoint, meta, new_versions)

    async def load(self, thread_id: str) -> Any:
        return await self.saver.aget_tuple(
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        )

    async def list(self, thread_id: str) -> int:
        return len([t async for t in self.saver.alist({"configurable": {"thread_id": thread_id}})])

    async def fork(self, thread_id: str, at_step: int, new_thread_id: str) -> None:
        await self.saver.acopy_thread(thread_id, new_thread_id)

    async def set_synchronous(self, level: str) -> None:
        """Only for building the read workloads' fixture faster; never while timing."""
        await self.saver.conn.execute(f"PRAGMA synchronous = {level}")

    async def close(self) -> None:
        await self._stack.aclose()
