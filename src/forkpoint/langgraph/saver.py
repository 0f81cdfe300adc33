"""``ForkpointSaver``: LangGraph's ``BaseCheckpointSaver`` on forkpoint's SQLite file.

Swap ``SqliteSaver``/``AsyncSqliteSaver`` for it and keep the graph::

    with ForkpointSaver.from_conn_string("agent.db") as saver:          # sync
        graph = builder.compile(checkpointer=saver)
    async with ForkpointSaver.from_conn_string("agent.db") as saver:    # async
        ...
    saver = ForkpointSaver.from_checkpointer(cp)   # on an open SqliteCheckpointer's engine

What it changes for the graph's data: channel values, writes and metadata are
stored as JSON through a :class:`~forkpoint.langgraph.registry.TypeRegistry`
(no pickle, no msgpack, nothing imported on load); a value of a type the
registry does not know is refused when it is saved (``UnregisteredType``). A
graph's own classes are registered with ``saver.register_graph(graph)``, the
``schemas=`` / ``types=`` arguments or ``saver.registry.register(cls)``; under
LangGraph's strict msgpack mode ``compile`` registers them itself
(``with_allowlist``: the classes are looked up among modules already imported,
never imported by name).

Every sync method works from any thread without an event loop; called on a
thread that is running one, it raises ``SyncCallOnEventLoop`` at once instead of
blocking that loop. The database work is the named row jobs of ``store.py``,
run on forkpoint's SQLite engine (group commit, ``BEGIN IMMEDIATE`` with a busy
timeout, a reader that never waits for the writer, typed errors). The engine
belongs to no event loop: async methods await it from the caller's own loop,
sync methods block the caller's thread on it; only opening, closing and
``vacuum`` run on an event loop the saver keeps (``_loop.py``).

A conversation's messages cost what changed, not the whole state: a put
encodes only the list elements it cannot vouch for, a read hands out copies of
elements it decoded before, and a listing decodes each stored element once
(``_lists.py``, ``reuse.py``).

This module runs past 600 lines because LangGraph's contract is one class with
a sync and an async face for each of its ten operations; both faces share
one request builder and one decoder here, and splitting the class would only
scatter that pairing.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import UTC, datetime, timedelta
from functools import partial
from os import PathLike, fspath
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)

from .._checks import check_keep_last
from ..codec import format_time
from ..errors import CheckpointerClosed, InvalidInput
from ..models import JsonState
from ..sqlite import SqliteCheckpointer
from . import store
from ._lists import Decoded, KnownList, ListCache
from ._loop import LoopThread, SharedLoop
from .builtin_types import default_registry
from .errors import SyncCallOnEventLoop, UndecodableValue
from .registry import TypeRegistry

__all__ = ["ForkpointSaver"]

Durability = Literal["full", "normal"]
T = TypeVar("T")
_PAGE = 100  # checkpoints read per query while listing; no lock is held between pages
_LIST_MIN = 8  # a list value this long or longer is stored element by element (appends share)
_WRITES_LINGER = 0.001
"""Seconds a task's pending writes may wait for company (``forkpoint.sqlite._writer``): LangGraph
sends the step's checkpoint after them (once the previous checkpoint's put has returned), and the
two then share one commit. Without it the writes take a commit of their own just before the
checkpoint arrives, and the checkpoint waits for it: 7.5 commits per invocation of the 5-node
benchmark graph instead of 6. When no checkpoint follows (an interrupt), the writes are committed
at most this much later."""


class ForkpointSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer storing its threads in a forkpoint SQLite database.

    ``path`` is a file (created and migrated if new; another application's
    SQLite file is refused) or ``":memory:"``. ``registry`` defaults to the
    built-in types; ``types`` (classes) and ``schemas`` (state schemas, walked
    for the models they name) are registered on it. ``durability="full"``
    syncs every commit (``synchronous=FULL``); ``"normal"`` may lose the last
    commits on power loss, never corrupt the file. ``keep_last=N``: a retention
    policy; each put then keeps only the newest N checkpoints of its thread's
    namespace (with their writes and the values they use), in the put's own
    transaction.
    """

    def __init__(
        self,
        path: str | PathLike[str] = ":memory:",
        *,
        registry: TypeRegistry | None = None,
        types: Sequence[type] = (),
        schemas: Sequence[Any] = (),
        durability: Durability = "full",
        busy_timeout: float = 5.0,
        keep_last: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(path, str | PathLike):
            raise InvalidInput(f"path must be a file path or ':memory:', not {path!r}")
        if durability not in ("full", "normal"):
            raise InvalidInput(f"durability must be 'full' or 'normal', not {durability!r}")
        if not isinstance(busy_timeout, int | float) or busy_timeout < 0:
            raise InvalidInput(
                f"busy_timeout must be a number of seconds >= 0, not {busy_timeout!r}"
            )
        self._configure(registry, types, schemas, keep_last)
        self._owns_checkpointer = True
        target = fspath(path)
        self._scratch: str | None = None
        if target == ":memory:":  # a private file that disappears on close
            self._scratch = tempfile.mkdtemp(prefix="forkpoint-langgraph-")
            target = os.path.join(self._scratch, "memory.db")
        self._loop: LoopThread | SharedLoop = LoopThread("forkpoint-langgraph", path=target)
        try:
            self._checkpointer = self._loop.run(
                lambda: SqliteCheckpointer.open(
                    target, JsonState, durability=durability, busy_timeout=busy_timeout
                )
            )
        except BaseException:
            self._loop.stop()
            self._remove_scratch()
            raise
        self._engine = self._checkpointer.engine

    def _configure(
        self,
        registry: TypeRegistry | None,
        types: Sequence[type],
        schemas: Sequence[Any],
        keep_last: int | None,
    ) -> None:
        self._keep_last = check_keep_last(keep_last)
        self.registry = registry if registry is not None else default_registry()
        for cls in types:
            self.registry.register(cls)
        for schema in schemas:
            self.registry.register_schema(schema)
        self._lists = ListCache()

    # --- opening and closing ---------------------------------------------------------------

    @classmethod
    def from_checkpointer(
        cls,
        checkpointer: SqliteCheckpointer[Any],
        *,
        registry: TypeRegistry | None = None,
        types: Sequence[type] = (),
        schemas: Sequence[Any] = (),
        keep_last: int | None = None,
    ) -> ForkpointSaver:
        """A saver on the database of an open ``SqliteCheckpointer``, sharing its engine.

        Call it inside the event loop that opened ``checkpointer``: the two
        share one engine (one writer, one group commit for both). Async methods
        work from that loop or any other, sync methods from any thread without
        a running loop (``asyncio.to_thread(graph.invoke, ...)``); ``vacuum``
        runs on the checkpointer's loop, so its sync form needs that loop
        running. Closing the saver leaves the checkpointer open; closing the
        checkpointer ends the saver too (``CheckpointerClosed``).
        """
        if not isinstance(checkpointer, SqliteCheckpointer):
            raise InvalidInput(
                f"checkpointer must be an open SqliteCheckpointer, not {type(checkpointer).__name__}"
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise InvalidInput(
                "ForkpointSaver.from_checkpointer() must be called inside the event loop "
                "that opened the checkpointer (in an async function)"
            ) from None
        engine = checkpointer.engine
        engine.check_usable()
        self = cls.__new__(cls)
        BaseCheckpointSaver.__init__(self)
        self._configure(registry, types, schemas, keep_last)
        self._owns_checkpointer = False
        self._scratch = None
        self._loop = SharedLoop(loop, path=engine.path)
        self._checkpointer = checkpointer
        self._engine = engine
        return self

    @classmethod
    def from_conn_string(cls, conn_string: str | PathLike[str], **options: Any) -> _Opener:
        """Open ``conn_string`` (a path or ``":memory:"``) as a sync or async context manager."""
        return _Opener(cls, conn_string, options)

    def close(self) -> None:
        """Close the database (idempotent); later calls raise ``CheckpointerClosed``.

        A saver made by :meth:`from_checkpointer` leaves that checkpointer open.
        """
        if self._owns_checkpointer:
            with contextlib.suppress(CheckpointerClosed):
                self._loop.run(self._checkpointer.close)
        self._loop.stop()
        self._remove_scratch()

    async def aclose(self) -> None:
        """``close`` without blocking the event loop."""
        if self._owns_checkpointer:
            with contextlib.suppress(CheckpointerClosed):
                await self._loop.arun(self._checkpointer.close)
        await asyncio.to_thread(self._loop.stop)
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    @property
    def path(self) -> str:
        """Absolute path of the database file (a private temporary file for ``":memory:"``)."""
        return self._engine.path

    # --- running row jobs on the engine ----------------------------------------------------

    # The engine answers whichever loop awaits it or thread blocks on it, so every call goes
    # straight to its connection threads: no hop through the saver's own loop.

    async def _write(self, job: Callable[..., T], *args: Any, linger: float = 0.0) -> T:
        self._loop.check_open()
        return await self._engine.write(job, *args, linger=linger)

    async def _read(self, job: Callable[..., T], *args: Any) -> T:
        self._loop.check_open()
        return await self._engine.read(job, *args)

    def _write_sync(self, method: str, job: Callable[..., T], *args: Any, linger: float = 0.0) -> T:
        _not_on_event_loop(method)
        self._loop.check_open()
        return self._engine.write_blocking(job, *args, linger=linger)

    def _read_sync(self, method: str, job: Callable[..., T], *args: Any) -> T:
        _not_on_event_loop(method)
        self._loop.check_open()
        return self._engine.read_blocking(job, *args)

    # --- registering the graph's types -------------------------------------------------------

    def register_graph(self, graph: Any) -> list[str]:
        """Register the models, dataclasses and enums a compiled graph's schemas name.

        Walks the state, input, output and node-input schemas of ``graph`` and of
        every subgraph (``graph.builder.schemas``, ``graph.get_subgraphs``), and
        returns the entry names added. Call it once after ``compile``.
        """
        found: list[str] = []
        graphs = [graph, *(sub for _, sub in graph.get_subgraphs(recurse=True))]
        for each in graphs:
            builder = getattr(each, "builder", None)
            for schema in getattr(builder, "schemas", {}):
                found += self.registry.register_schema(schema)
        return found

    # --- LangGraph hooks -------------------------------------------------------------------

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> ForkpointSaver:
        """Register the classes a graph's schemas name (``compile`` calls it in strict mode).

        LangGraph calls this when ``LANGGRAPH_STRICT_MSGPACK`` is on; otherwise
        use :meth:`register_graph` or the ``schemas`` argument.

        Each ``(module, name)`` is looked up among modules already imported (the
        graph's schema imported them); nothing is imported. Registration goes into
        this saver's own registry, so the saver object and the graph agree.
        """
        for item in extra_allowlist:
            if len(item) != 2 or item[0].startswith(("langchain_core.", "langgraph.")):
                continue
            module = sys.modules.get(item[0])
            cls = getattr(module, item[1], None) if module is not None else None
            if isinstance(cls, type) and self.registry.entry_for(cls) is None:
                self.registry.register_schema(cls)
        return self

    def get_next_version(self, current: str | None, channel: None) -> str:
        """Versions as LangGraph's in-memory saver makes them: a counter plus a random tail."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"  # noqa: S311 - uniqueness, not secrecy

    # --- async API -------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._latest(await self._read(store.read_checkpoint, *_locate(config)))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        query = _ListQuery(self, config, filter, before, limit)
        while (args := query.next_args()) is not None:
            page = await self._read(store.list_checkpoints, *args)
            for item in query.take(page):
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        request, encoded = self._put_request(config, checkpoint, metadata, new_versions)
        self._lists.stored(request, encoded, await self._write(store.put_checkpoint, request))
        return _config(request.thread_id, request.checkpoint_ns, request.checkpoint_id)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        args = self._writes_args(config, writes, task_id, task_path)
        await self._write(store.put_writes, *args, linger=_WRITES_LINGER)

    async def adelete_thread(self, thread_id: str) -> None:
        self._lists.forget([_thread(thread_id)])
        await self._write(store.delete_thread, _thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._lists.forget()
        await self._write(store.delete_for_runs, _run_ids(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._write(store.copy_thread, _thread(source_thread_id), _thread(target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        threads = _thread_list(thread_ids)
        self._lists.forget(threads)
        await self._write(store.prune, threads, strategy)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """``get_delta_channel_history`` in one read: the parent chain walked in SQL."""
        if not channels:
            return {}
        found = await self._read(store.read_delta_history, *_locate(config), _channels(channels))
        return self._delta(found, channels)

    async def avacuum(self) -> int:
        """Give the pages freed by deletions back to the file system; the bytes the file shrank by."""
        return await self._loop.arun(self._checkpointer.vacuum)

    async def adelete_inactive(self, older_than: timedelta) -> builtins.list[str]:
        """Delete every thread with no checkpoint written in the last ``older_than``; their ids.

        A time-to-live over threads: run it on a schedule to bound the file.
        """
        self._lists.forget()
        return await self._write(store.delete_inactive, _cutoff(older_than))

    # --- sync API (same requests; refuses the event loop's thread) ------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._latest(self._read_sync("get_tuple", store.read_checkpoint, *_locate(config)))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        _not_on_event_loop("list")
        return self._pages(_ListQuery(self, config, filter, before, limit))

    def _pages(self, query: _ListQuery) -> Iterator[CheckpointTuple]:
        while (args := query.next_args()) is not None:
            page = self._read_sync("list", store.list_checkpoints, *args)
            yield from query.take(page)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        _not_on_event_loop("put")
        request, encoded = self._put_request(config, checkpoint, metadata, new_versions)
        stored = self._write_sync("put", store.put_checkpoint, request)
        self._lists.stored(request, encoded, stored)
        return _config(request.thread_id, request.checkpoint_ns, request.checkpoint_id)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        _not_on_event_loop("put_writes")
        args = self._writes_args(config, writes, task_id, task_path)
        self._write_sync("put_writes", store.put_writes, *args, linger=_WRITES_LINGER)

    def delete_thread(self, thread_id: str) -> None:
        self._lists.forget([_thread(thread_id)])
        self._write_sync("delete_thread", store.delete_thread, _thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._lists.forget()
        self._write_sync("delete_for_runs", store.delete_for_runs, _run_ids(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        source, target = _thread(source_thread_id), _thread(target_thread_id)
        self._write_sync("copy_thread", store.copy_thread, source, target)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        threads = _thread_list(thread_ids)
        self._lists.forget(threads)
        self._write_sync("prune", store.prune, threads, strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, Any]:
        """Each channel's writes along the checkpoint's ancestors, oldest first, and its
        nearest stored value, where replaying them starts (LangGraph's ``DeltaChannel``):
        one read job instead of one ``get_tuple`` per ancestor."""
        if not channels:
            return {}
        args = (*_locate(config), _channels(channels))
        found = self._read_sync("get_delta_channel_history", store.read_delta_history, *args)
        return self._delta(found, channels)

    def vacuum(self) -> int:
        """Sync :meth:`avacuum`."""
        _not_on_event_loop("vacuum")
        return self._loop.run(self._checkpointer.vacuum)

    def delete_inactive(self, older_than: timedelta) -> builtins.list[str]:
        """Sync :meth:`adelete_inactive`."""
        self._lists.forget()
        return self._write_sync("delete_inactive", store.delete_inactive, _cutoff(older_than))

    # --- encoding and decoding -------------------------------------------------------------

    def _put_request(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[store.PutRequest, dict[str, KnownList]]:
        """The job's request, and each list value's element encodings (for :class:`ListCache`)."""
        thread_id, checkpoint_ns, parent_id = _locate(config)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("id"), str):
            raise InvalidInput(
                "a checkpoint must be a dict with a string 'id'", thread_id=thread_id
            )
        dumps = self.registry.dumps
        md = get_serializable_checkpoint_metadata(config, metadata)
        versions = checkpoint.get("channel_versions", {})
        blobs = []
        encoded: dict[str, KnownList] = {}
        for channel, value in checkpoint.get("channel_values", {}).items():
            version = versions.get(channel)
            if version is None:
                blobs.append(store.BlobIn(channel, None, dumps(value, channel=channel)))
                continue
            key = json.dumps(version)
            if channel in new_versions and type(value) is list and len(value) >= _LIST_MIN:
                known, base = self._lists.encode(
                    (thread_id, checkpoint_ns, channel), value, self.registry
                )
                encoded[channel] = known
                blobs.append(store.BlobIn(channel, key, "", known.texts, base))
            elif channel in new_versions:
                blobs.append(store.BlobIn(channel, key, dumps(value, channel=channel)))
            else:
                blobs.append(store.BlobIn(channel, key, partial(dumps, value, channel=channel)))
        skeleton = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        run_id = md.get("run_id")
        request = store.PutRequest(
            thread_id=thread_id,
            checkpoint_ns=checkpoint_ns,
            checkpoint_id=checkpoint["id"],
            parent_checkpoint_id=parent_id,
            run_id=None if run_id is None else str(run_id),
            created_at=format_time(datetime.now(UTC)),
            metadata=dumps(md, channel="<metadata>"),
            checkpoint=dumps(skeleton, channel="<checkpoint>"),
            blobs=blobs,
            keep_last=self._keep_last,
        )
        return request, encoded

    def _writes_args(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> tuple[Any, ...]:
        thread_id, checkpoint_ns, checkpoint_id = _locate(config)
        if checkpoint_id is None:
            raise InvalidInput(
                "put_writes needs a config with a checkpoint_id", thread_id=thread_id
            )
        if not isinstance(task_id, str) or not isinstance(task_path, str):
            raise InvalidInput("task_id and task_path must be strings", thread_id=thread_id)
        rows = [
            (WRITES_IDX_MAP.get(channel, idx), channel, self.registry.dumps(value, channel=channel))
            for idx, (channel, value) in enumerate(writes)
        ]
        return thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, rows

    def _delta(self, found: store.DeltaHistory, channels: Sequence[str]) -> dict[str, Any]:
        """The history LangGraph's default walk would return, from one read's rows."""
        loads = self.registry.loads
        decoded = Decoded(self.registry)
        decoded.add(store.Page([], found.items))
        result: dict[str, Any] = {}
        # nearest ancestor first; within one, writes_sort_key order; then reversed (oldest first)
        ordered = sorted(
            found.writes, key=lambda w: (-w[0], writes_sort_key(w[1][3], w[1][0], w[1][4]))
        )
        for channel in dict.fromkeys(channels):
            start = found.starts.get(channel)
            entry: dict[str, Any] = {
                "writes": [  # up to the ancestor holding a stored value (all the way without one)
                    (task_id, ch, loads(text, channel=ch))
                    for depth, (task_id, ch, text, _, _) in ordered
                    if ch == channel and (start is None or depth <= start[0])
                ]
            }
            if start is not None:
                value = start[1]
                if value is None:
                    raise UndecodableValue("the stored value is missing", channel=channel)
                entry.update(
                    seed=decoded.value(channel, value)
                    if isinstance(value, store.ListRef)
                    else loads(value, channel=channel)
                )
            result[channel] = entry
        return result

    def _latest(self, page: store.Page) -> CheckpointTuple | None:
        """``get_tuple``'s answer; its list values' elements are remembered for the next put."""
        if not page.rows:
            return None
        row = page.rows[0]
        known = {
            channel: self._lists.get((row.thread_id, row.checkpoint_ns, channel))
            for channel in row.lists
        }
        decoded = Decoded(self.registry, {ref.key: known[c] for c, ref in row.lists.items()})
        decoded.add(page)
        found = self._tuple(row, decoded)
        values = found.checkpoint["channel_values"]
        for channel, ref in row.lists.items():
            self._lists.read(
                (row.thread_id, row.checkpoint_ns, channel),
                ref.key[3],
                decoded.texts[ref.key][: ref.length],
                values[channel],
                decoded.twins[ref.key][: ref.length],
                decoded.snapshots[ref.key][: ref.length],
            )
        return found

    def _tuple(self, row: store.StoredCheckpoint, decoded: Decoded) -> CheckpointTuple:
        loads = self.registry.loads
        try:
            checkpoint = loads(row.checkpoint, channel="<checkpoint>")
            metadata = loads(row.metadata, channel="<metadata>")
            values = {}
            for channel, text in row.values.items():
                if text is None:
                    raise UndecodableValue("the stored value is missing", channel=channel)
                values[channel] = loads(text, channel=channel)
            for channel, ref in row.lists.items():
                values[channel] = decoded.value(channel, ref)
            writes: list[PendingWrite] = [
                (task_id, channel, loads(text, channel=channel))
                for task_id, channel, text, _, _ in sorted(
                    row.writes, key=lambda w: writes_sort_key(w[3], w[0], w[4])
                )
            ]
        except UndecodableValue as exc:
            exc.thread_id = row.thread_id
            raise
        if not isinstance(checkpoint, dict) or not isinstance(metadata, dict):
            raise UndecodableValue("a stored checkpoint is not an object", thread_id=row.thread_id)
        checkpoint["channel_values"] = values
        parent = (
            None
            if row.parent_checkpoint_id is None
            else _config(row.thread_id, row.checkpoint_ns, row.parent_checkpoint_id)
        )
        return CheckpointTuple(
            _config(row.thread_id, row.checkpoint_ns, row.checkpoint_id),
            cast(Checkpoint, checkpoint),
            cast(CheckpointMetadata, metadata),
            parent,
            writes,
        )


class _ListQuery:
    """The arguments of each page of a listing, and the bookkeeping between pages."""

    def __init__(
        self,
        saver: ForkpointSaver,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> None:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise InvalidInput(f"limit must be an int, not {limit!r}")
        if filter is not None and not isinstance(filter, dict):
            raise InvalidInput(f"filter must be a dict, not {filter!r}")
        self.saver = saver
        configurable = (config or {}).get("configurable", {})
        self.thread_id = None if config is None else _thread(configurable.get("thread_id"))
        ns = configurable.get("checkpoint_ns")
        self.checkpoint_ns = None if ns is None else str(ns)
        cid = configurable.get("checkpoint_id")
        self.checkpoint_id = None if cid is None else str(cid)
        self.before = None if before is None else get_checkpoint_id(before)
        self.remaining = limit
        self.below: int | None = None
        self.keep = None if not filter else partial(_matches, saver.registry, dict(filter))
        self.done = limit is not None and limit <= 0
        self.decoded = Decoded(saver.registry)

    def next_args(self) -> tuple[Any, ...] | None:
        if self.done:
            return None
        count = _PAGE if self.remaining is None else min(_PAGE, self.remaining)
        return (
            self.thread_id,
            self.checkpoint_ns,
            self.checkpoint_id,
            self.before,
            self.below,
            self.keep,
            count,
            self.decoded.known(),
        )

    def take(self, page: store.Page) -> list[CheckpointTuple]:
        rows = page.rows
        self.decoded.add(page)
        count = _PAGE if self.remaining is None else min(_PAGE, self.remaining)
        if len(rows) < count:
            self.done = True
        if rows:
            self.below = rows[-1].seq
        if self.remaining is not None:
            self.remaining -= len(rows)
            self.done = self.done or self.remaining <= 0
        return [self.saver._tuple(row, self.decoded) for row in rows]


def _matches(registry: TypeRegistry, wanted: dict[str, Any], metadata_text: str) -> bool:
    """Metadata filter: every key's stored value equals the wanted one (missing equals None)."""
    metadata = registry.loads(metadata_text, channel="<metadata>")
    return isinstance(metadata, dict) and all(metadata.get(k) == v for k, v in wanted.items())


# --- small helpers ---------------------------------------------------------------------------


def _cutoff(older_than: timedelta) -> str:
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise InvalidInput(f"older_than must be a timedelta >= 0, not {older_than!r}")
    return format_time(datetime.now(UTC) - older_than)


def _not_on_event_loop(method: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise SyncCallOnEventLoop(
        f"ForkpointSaver.{method}() was called on a thread that is running an event loop, "
        f"where waiting would block that loop; use 'await saver.a{method}(...)', or call it "
        "from another thread"
    )


def _thread(thread_id: Any) -> str:
    if thread_id is None or isinstance(thread_id, bool) or not isinstance(thread_id, str | int):
        raise InvalidInput(f"thread_id must be a string, not {thread_id!r}")
    return str(thread_id)


def _thread_list(thread_ids: Sequence[str]) -> list[str]:
    if isinstance(thread_ids, str):
        raise InvalidInput("thread_ids must be a list of thread ids, not one string")
    return [_thread(t) for t in thread_ids]


def _channels(channels: Sequence[str]) -> list[str]:
    if isinstance(channels, str) or not all(isinstance(c, str) for c in channels):
        raise InvalidInput("channels must be a list of channel names")
    return list(dict.fromkeys(channels))


def _run_ids(run_ids: Sequence[str]) -> list[str]:
    if isinstance(run_ids, str):
        raise InvalidInput("run_ids must be a list of run ids, not one string")
    return [str(r) for r in run_ids]


def _locate(config: RunnableConfig) -> tuple[str, str, str | None]:
    """``(thread_id, checkpoint_ns, checkpoint_id or None)`` of a config."""
    configurable = config.get("configurable") if isinstance(config, dict) else None
    if not isinstance(configurable, dict):
        raise InvalidInput("config must be {'configurable': {'thread_id': ...}}")
    thread_id = _thread(configurable.get("thread_id"))
    ns = configurable.get("checkpoint_ns", "") or ""
    if not isinstance(ns, str):
        raise InvalidInput(f"checkpoint_ns must be a string, not {ns!r}", thread_id=thread_id)
    checkpoint_id = configurable.get("checkpoint_id")
    return thread_id, ns, None if checkpoint_id is None else str(checkpoint_id)


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
        }
    }


class _Opener(
    AbstractContextManager["ForkpointSaver"], AbstractAsyncContextManager["ForkpointSaver"]
):
    """What ``from_conn_string`` returns: a sync and an async context manager."""

    def __init__(
        self, cls: type[ForkpointSaver], path: str | PathLike[str], options: dict[str, Any]
    ):
        self._open = partial(cls, path, **options)
        self._saver: ForkpointSaver | None = None

    def __enter__(self) -> ForkpointSaver:
        self._saver = self._open()
        return self._saver

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saver is not None:
            self._saver.close()

    async def __aenter__(self) -> ForkpointSaver:
        self._saver = await asyncio.to_thread(self._open)
        return self._saver

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saver is not None:
            await self._saver.aclose()
