"""Copy threads from a LangGraph ``SqliteSaver`` database into a :class:`ForkpointSaver`.

LangGraph stores values as msgpack whose extension records name a module, a
class and sometimes a method, which its loader imports and calls. This importer
reads those records with a **fixed allowlist** and never imports by name: a
``(module, class)`` pair is turned into a value only if it is one of the
standard-library types below, or the exact module and name of a class already
in the target saver's type registry (LangChain messages and documents,
LangGraph's types, and whatever the application registered). Anything else — an
unknown class, ``os.system``, a pickle row, a pydantic v1 or numpy record —
makes that checkpoint (or write) *reported and skipped*, never executed.

Threads are copied in the source's order (checkpoint id order, namespaces
included) with their ids, parents, metadata and pending writes, through the
saver's own ``aput``/``aput_writes``, so the result is exactly what the saver
would have stored had it run the graph: unchanged channels shared, message
lists stored once per message.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import pathlib
import sqlite3
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote
from zoneinfo import ZoneInfo

import ormsgpack

from ..errors import CheckpointError, InvalidInput, NotAForkpointDatabase
from .saver import ForkpointSaver

__all__ = ["ImportReport", "import_langgraph"]

# LangGraph's msgpack extension codes (langgraph.checkpoint.serde.jsonplus)
_SINGLE_ARG, _POS_ARGS, _KW_ARGS, _METHOD_ARG, _PYDANTIC_V2 = 0, 1, 2, 3, 5

_STDLIB: dict[tuple[str, str], Callable[..., Any]] = {
    ("uuid", "UUID"): uuid.UUID,
    ("decimal", "Decimal"): decimal.Decimal,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("collections", "deque"): deque,
    ("zoneinfo", "ZoneInfo"): ZoneInfo,
    ("datetime", "timedelta"): dt.timedelta,
    ("datetime", "date"): dt.date,
    ("datetime", "time"): dt.time,
    ("datetime", "timezone"): dt.timezone,
    ("datetime", "datetime"): dt.datetime.fromisoformat,
    ("pathlib", "Path"): pathlib.Path,
    ("pathlib", "PosixPath"): pathlib.Path,
    ("pathlib", "PurePosixPath"): pathlib.PurePosixPath,
    ("pathlib", "PureWindowsPath"): pathlib.PureWindowsPath,
}


class _Refused(Exception):
    """A value the allowlist does not cover; the row is reported and skipped."""


@dataclass
class ImportReport:
    """What an import did: counts, what it skipped and why, and the sizes."""

    threads: int = 0
    checkpoints: int = 0
    writes: int = 0
    skipped: list[str] = field(default_factory=list)
    source_bytes: int = 0
    target_bytes: int = 0

    @property
    def smaller_by(self) -> float:
        """How many times smaller the target file is than the source (``source / target``)."""
        return self.source_bytes / self.target_bytes if self.target_bytes else 0.0


class _Decoder:
    """LangGraph's typed values, decoded with the fixed allowlist (never importing)."""

    def __init__(self, saver: ForkpointSaver) -> None:
        self._why: str | None = None
        self.classes: dict[tuple[str, str], Any] = {}
        for entry in saver.registry.entries():
            self.classes[(entry.cls.__module__, entry.cls.__name__)] = entry

    def loads(self, kind: str | None, data: bytes | None) -> Any:
        if kind == "null":
            return None
        if kind == "bytes":
            return bytes(data or b"")
        if kind == "bytearray":
            return bytearray(data or b"")
        if kind == "msgpack":
            self._why = None
            try:
                return ormsgpack.unpackb(
                    data or b"", ext_hook=self._ext, option=ormsgpack.OPT_NON_STR_KEYS
                )
            except _Refused:
                raise
            except (ormsgpack.MsgpackDecodeError, ValueError, TypeError) as exc:
                # ormsgpack reports a failing ext_hook as "ext_hook failed": keep our reason
                raise _Refused(self._why or f"not decodable msgpack ({exc})") from None
        raise _Refused(f"values stored as {kind!r} are not imported (never unpickled or revived)")

    def _ext(self, code: int, data: bytes) -> Any:
        try:
            return self._ext_value(code, data)
        except _Refused as exc:
            self._why = self._why or str(exc)  # the innermost refusal is the reason
            raise

    def _ext_value(self, code: int, data: bytes) -> Any:
        record = ormsgpack.unpackb(data, ext_hook=self._ext, option=ormsgpack.OPT_NON_STR_KEYS)
        if code not in (_SINGLE_ARG, _POS_ARGS, _KW_ARGS, _METHOD_ARG, _PYDANTIC_V2):
            raise _Refused(f"msgpack extension {code} is not imported")
        if not isinstance(record, list | tuple) or len(record) < 3:
            raise _Refused("malformed msgpack extension record")
        module, name, payload = record[0], record[1], record[2]
        key = (str(module), str(name))
        try:
            entry = self.classes.get(key)
            if entry is not None:
                if code == _POS_ARGS and key == ("langgraph.types", "Send"):
                    fields = dict(zip(("node", "arg", "timeout"), payload, strict=False))
                    return entry.decode(fields)
                return entry.decode(payload)
            make = _STDLIB.get(key)
            if make is None:
                raise _Refused(f"{module}.{name} is not in the import allowlist")
            if code == _POS_ARGS:
                return make(*payload)
            if code == _KW_ARGS:
                return make(**payload)
            return make(payload)
        except _Refused:
            raise
        except Exception as exc:  # noqa: BLE001 - a record that does not fit its class is the row's fault
            raise _Refused(f"{module}.{name} does not accept the stored value ({exc})") from None


async def import_langgraph(
    source: str | os.PathLike[str],
    saver: ForkpointSaver,
    *,
    thread_ids: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Copy the threads of LangGraph SQLite database ``source`` into ``saver``.

    ``thread_ids`` limits the copy; ``progress(done, total)`` is called after
    each checkpoint. A thread that already has checkpoints in ``saver`` is
    refused (``ThreadExists`` semantics: nothing of it is copied) and reported.
    The source is opened read-only and never modified; it is read on the
    calling thread, a thread at a time (an import is a batch job, not a request).
    """
    path = os.fspath(source)
    if not os.path.isfile(path):  # noqa: ASYNC240 - a stat, once per import
        raise InvalidInput(f"no LangGraph database at {path!r}")
    report = ImportReport(source_bytes=os.path.getsize(path))  # noqa: ASYNC240 - a stat, once
    decoder = _Decoder(saver)
    uri = f"file:{quote(path)}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as conn:
        try:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            raise NotAForkpointDatabase(f"not an SQLite database: {exc}", path=path) from exc
        if not {"checkpoints", "writes"} <= tables:
            raise InvalidInput("the file has no LangGraph checkpoints/writes tables", path=path)
        wanted = (
            list(thread_ids)
            if thread_ids is not None
            else [
                r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM checkpoints ORDER BY 1")
            ]
        )
        total = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),),
        ).fetchone()[0]
        done = 0
        for thread_id in wanted:
            if await saver.aget_tuple({"configurable": {"thread_id": thread_id}}) is not None:
                report.skipped.append(f"thread {thread_id!r}: already in the target, not copied")
                continue
            report.threads += 1
            rows = conn.execute(
                "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, "
                "metadata FROM checkpoints WHERE thread_id = ? ORDER BY checkpoint_ns, checkpoint_id",
                (thread_id,),
            ).fetchall()
            versions_of: dict[tuple[str, str], dict[str, Any]] = {}
            for ns, cid, parent, kind, blob, metadata in rows:
                where = f"thread {thread_id!r} checkpoint {cid!r}"
                try:
                    checkpoint = decoder.loads(kind, blob)
                    meta = json.loads(metadata) if metadata is not None else {}
                    if not isinstance(checkpoint, dict) or not isinstance(meta, dict):
                        raise _Refused("not a checkpoint")
                except (_Refused, ValueError) as exc:
                    report.skipped.append(f"{where}: {exc}")
                    continue
                versions = dict(checkpoint.get("channel_versions", {}))
                before = versions_of.get((ns, parent), {}) if parent else {}
                new = {k: v for k, v in versions.items() if before.get(k) != v}
                config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}}
                if parent:
                    config["configurable"]["checkpoint_id"] = parent
                try:
                    stored = await saver.aput(config, cast(Any, checkpoint), cast(Any, meta), new)
                except CheckpointError as exc:
                    report.skipped.append(f"{where}: {exc}")
                    continue
                versions_of[(ns, cid)] = versions
                report.checkpoints += 1
                report.writes += await _copy_writes(conn, decoder, saver, stored, report)
                done += 1
                if progress is not None:
                    progress(done, total)
    report.target_bytes = os.path.getsize(saver.path)  # noqa: ASYNC240 - a stat, once
    return report


async def _copy_writes(
    conn: sqlite3.Connection,
    decoder: _Decoder,
    saver: ForkpointSaver,
    stored: Any,
    report: ImportReport,
) -> int:
    """Copy one checkpoint's pending writes, task by task; the number copied."""
    conf = stored["configurable"]
    columns = {r[1] for r in conn.execute("PRAGMA table_info(writes)")}
    path_column = "task_path" if "task_path" in columns else "''"
    rows = conn.execute(
        f"SELECT task_id, {path_column}, idx, channel, type, value FROM writes "  # noqa: S608 - fixed column names
        "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ? ORDER BY task_id, idx",
        (conf["thread_id"], conf["checkpoint_ns"], conf["checkpoint_id"]),
    ).fetchall()
    by_task: dict[tuple[str, str], list[tuple[int, str, Any]]] = {}
    for task_id, task_path, idx, channel, kind, value in rows:
        try:
            decoded = decoder.loads(kind, value)
        except _Refused as exc:
            report.skipped.append(
                f"thread {conf['thread_id']!r} checkpoint {conf['checkpoint_id']!r} "
                f"write {task_id}/{idx} ({channel}): {exc}"
            )
            continue
        by_task.setdefault((task_id, task_path), []).append((idx, channel, decoded))
    copied = 0
    for (task_id, task_path), writes in by_task.items():
        # special writes carry their negative idx by channel; ordinary ones by position
        ordinary = sorted((w for w in writes if w[0] >= 0), key=lambda w: w[0])
        special = [w for w in writes if w[0] < 0]
        for group in (ordinary, *([w] for w in special)):
            if group:
                await saver.aput_writes(
                    stored, [(channel, value) for _, channel, value in group], task_id, task_path
                )
                copied += len(group)
    return copied
