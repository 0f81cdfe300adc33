"""``forkpoint``: look inside, repair and move forkpoint databases from the shell.

Works on any forkpoint database **without** the application's state classes:
every checkpointer here is opened with :class:`~forkpoint.JsonState`, which
keeps whatever JSON the state holds. Reading commands (``threads``,
``history``, ``show``, ``diff``, ``tree``, ``export``, ``check``, ``stats``)
open the file read-only and never create one; ``import``, ``fork`` and
``migrate`` create a missing database; ``delete``, ``prune`` and ``vacuum``
change an existing one.

The database is ``--db PATH``, else ``$FORKPOINT_DB``, else ``./forkpoint.db``.
Listings print tables, or JSON with ``--json``. A user mistake (missing
database, unknown thread, bad step, not a forkpoint database, newer schema)
prints one line on stderr and exits 1, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TextIO
from urllib.parse import quote

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.tree import Tree

from .base import check_restore
from .codec import format_time
from .errors import CheckpointError, CheckpointNotFound, SerializationError, ThreadExists
from .migrate import HEAD_REVISION
from .models import Checkpoint, CheckpointMetadata, JsonState, ThreadInfo
from .sqlite import SqliteCheckpointer

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "app", "main"]

EXPORT_FORMAT = "forkpoint-export"
EXPORT_VERSION = 1
DEFAULT_DB = "forkpoint.db"
_PAGE = 1000  # rows per listing page: memory stays bounded on any database
_PROGRESS_MIN = 500  # rows before a progress bar is worth showing

_STEP_ARGS = {"ignore_unknown_options": True}  # so `show t -1` reaches our one-line error

app = typer.Typer(
    name="forkpoint",
    help="Inspect and manage forkpoint checkpoint databases (threads, history, forks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 1."""


# --- options ------------------------------------------------------------------------------------

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Database file (default: $FORKPOINT_DB, else ./forkpoint.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.callback()
def _root(ctx: typer.Context, db: DbOption = None) -> None:
    """Inspect and manage forkpoint checkpoint databases (threads, history, forks)."""
    ctx.obj = db


def _db_path(ctx: typer.Context, db: Path | None) -> Path:
    chosen = db or ctx.obj or os.environ.get("FORKPOINT_DB") or DEFAULT_DB
    return Path(chosen)


# --- plumbing -----------------------------------------------------------------------------------


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _execute(work: Callable[[], Coroutine[Any, Any, int | None]]) -> None:
    """Run a command's coroutine; user mistakes become one line on stderr and exit 1."""
    try:
        code = asyncio.run(work())
    except (UserError, CheckpointError, OSError) as exc:
        message = _one_line(exc)
        if isinstance(exc, OSError):
            message = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else message
        _err().print(f"forkpoint: error: {message}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


def _check_path(path: Path, *, create: bool) -> bool:
    """Whether ``path`` exists; UserError if it must and does not, or is a directory."""
    exists = path.exists()
    if not exists and not create:
        raise UserError(
            f"no forkpoint database at {str(path)!r} (give --db PATH or set FORKPOINT_DB)"
        )
    if exists and path.is_dir():
        raise UserError(f"{str(path)!r} is a directory, not a forkpoint database")
    return exists


def _file_bytes(path: Path) -> tuple[int, int]:
    """Sizes of the database file and its WAL (0 if there is none)."""
    wal = Path(str(path) + "-wal")
    return path.stat().st_size, wal.stat().st_size if wal.exists() else 0


@contextlib.asynccontextmanager
async def _open(
    path: Path, *, write: bool = False, create: bool = False, migrate: bool = False
) -> AsyncIterator[SqliteCheckpointer[JsonState]]:
    """Open ``path`` with JsonState: read-only unless ``write``; a missing file only if ``create``."""
    exists = _check_path(path, create=create)
    cp = await SqliteCheckpointer.open(
        path,
        JsonState,
        read_only=not (write or create or migrate),
        migrate=migrate or not exists,
    )
    try:
        yield cp
    finally:
        await cp.close()


def _parse_step(text: str, name: str = "step") -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise UserError(f"{name} must be a whole number ≥ 0, not {text!r}")
    return int(text)


async def _require_thread(cp: SqliteCheckpointer[JsonState], thread_id: str) -> ThreadInfo:
    info = await cp.thread_info(thread_id)
    if info is None:
        raise UserError(f"no thread {thread_id!r} in {cp.path}")
    return info


def _no_checkpoint(info: ThreadInfo, step: int | None) -> UserError:
    return UserError(
        f"thread {info.thread_id!r} has no checkpoint at step {step} "
        f"(it has {info.checkpoint_count} checkpoints, the latest at step {info.latest_step})"
    )


async def _require_checkpoint(
    cp: SqliteCheckpointer[JsonState], thread_id: str, step: int | None
) -> Checkpoint[JsonState]:
    found = await (cp.load(thread_id) if step is None else cp.get(thread_id, step))
    if found is None:  # only now is the thread record worth reading, for the message
        raise _no_checkpoint(await _require_thread(cp, thread_id), step)
    return found


async def _all_threads(cp: SqliteCheckpointer[JsonState]) -> list[ThreadInfo]:
    out: list[ThreadInfo] = []
    after: str | None = None
    while True:
        page = await cp.list_threads(limit=_PAGE, after=after)
        out += page
        if len(page) < _PAGE:
            return out
        after = page[-1].thread_id


async def _history(
    cp: SqliteCheckpointer[JsonState], thread_id: str
) -> AsyncIterator[CheckpointMetadata]:
    after: int | None = None
    while True:
        page = await cp.list_checkpoints(thread_id, after=after, limit=_PAGE)
        for item in page:
            yield item
        if len(page) < _PAGE:
            return
        after = page[-1].seq


def _dumps(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=None)


def _print_json(value: Any) -> None:
    sys.stdout.write(_dumps(value) + "\n")


def _state_json(cp: Checkpoint[JsonState]) -> Any:
    return cp.state.data.model_dump(mode="json")


def _checkpoint_json(cp: Checkpoint[JsonState]) -> dict[str, Any]:
    return {
        "thread_id": cp.thread_id,
        "step": cp.step,
        "node": cp.node,
        "queue": [[n, p] for n, p in cp.queue],
        "created_at": format_time(cp.created_at),
        "metadata": cp.metadata,
        "state": _state_json(cp),
    }


def _thread_json(info: ThreadInfo) -> dict[str, Any]:
    """A thread record as JSON, its times spelled as everywhere else (``format_time``)."""
    return {
        **info.model_dump(mode="json"),
        "created_at": format_time(info.created_at),
        "updated_at": format_time(info.updated_at),
    }


def _time(value: Any) -> str:
    return str(value.strftime("%Y-%m-%d %H:%M:%S"))


def _clock(value: Any) -> str:
    return str(value.strftime("%H:%M:%S.%f"))[:-3]


def _queue_text(queue: list[tuple[str, int]]) -> str:
    return ", ".join(f"{n}/{p}" for n, p in queue) if queue else "-"


def _meta_text(metadata: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v if isinstance(v, str) else _dumps(v, indent=None)}" for k, v in metadata.items()
    )


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _progress_console(total: int) -> Console | None:
    """The stderr console to show progress on, or None: ``FORKPOINT_PROGRESS`` = auto|always|never.

    ``auto`` shows it when stderr is a terminal and ``total`` is at least ``_PROGRESS_MIN``.
    """
    mode = os.environ.get("FORKPOINT_PROGRESS", "auto")
    console = Console(stderr=True, force_terminal=True if mode == "always" else None)
    show = mode == "always" or (mode == "auto" and console.is_terminal and total >= _PROGRESS_MIN)
    return console if show else None


@contextlib.contextmanager
def _spinner(description: str) -> Iterator[None]:
    """A spinner on stderr for one long call of unknown length (prune, vacuum); as ``_progress``."""
    console = _progress_console(_PROGRESS_MIN)
    if console is None:
        yield
        return
    with console.status(description):
        yield


@contextlib.contextmanager
def _progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr for long jobs; shown as ``_progress_console`` decides."""
    console = _progress_console(total)
    if console is None:
        yield lambda _n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


# --- threads, history, show ---------------------------------------------------------------------


@app.command()
def threads(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List threads with their lineage (parent, forks) and checkpoint counts."""

    async def work() -> None:
        async with _open(_db_path(ctx, db)) as cp:
            infos = await _all_threads(cp)
            forks: dict[str, int] = {}
            for info in infos:
                if info.parent_thread_id is not None:
                    forks[info.parent_thread_id] = forks.get(info.parent_thread_id, 0) + 1
            last_nodes = {}
            for info in infos:
                last = await cp.list_checkpoints(info.thread_id, newest_first=True, limit=1)
                last_nodes[info.thread_id] = last[0].node if last else ""
        if as_json:
            _print_json(
                [
                    {
                        **_thread_json(i),
                        "latest_node": last_nodes[i.thread_id],
                        "forks": forks.get(i.thread_id, 0),
                    }
                    for i in infos
                ]
            )
            return
        table = Table("thread", "checkpoints", "latest", "node", "forked from", "forks", "updated")
        for i in infos:
            parent = f"{i.parent_thread_id} @ {i.parent_step}" if i.parent_thread_id else "-"
            table.add_row(
                i.thread_id,
                str(i.checkpoint_count),
                str(i.latest_step),
                last_nodes[i.thread_id],
                parent,
                str(forks.get(i.thread_id, 0)),
                _time(i.updated_at),
            )
        _out().print(table if infos else "no threads")

    _execute(work)


@app.command()
def history(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.")],
    last: Annotated[
        int | None, typer.Option("--last", min=1, help="Only the newest N checkpoints.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a thread's checkpoints: step, time, node that finished, pending queue, metadata."""

    async def work() -> None:
        async with _open(_db_path(ctx, db)) as cp:
            await _require_thread(cp, thread)
            rows = []
            if last is not None:
                newest = await cp.list_checkpoints(thread, newest_first=True, limit=last)
                metas = list(reversed(newest))
            else:
                metas = [m async for m in _history(cp, thread)]
            for meta in metas:
                full = await cp.get(thread, meta.seq)
                queue = [] if full is None else list(full.queue)
                rows.append((meta, queue))
        if as_json:
            _print_json(
                [
                    {
                        "step": m.seq,
                        "created_at": format_time(m.created_at),
                        "node": m.node,
                        "queue": [[n, p] for n, p in q],
                        "metadata": m.metadata,
                    }
                    for m, q in rows
                ]
            )
            return
        day = _time(rows[0][0].created_at)[:10] if rows else ""
        table = Table(
            "step", "time", "node", "queue (node/path)", "metadata", title=f"{thread} · {day} UTC"
        )
        for m, q in rows:
            table.add_row(
                str(m.seq), _clock(m.created_at), m.node, _queue_text(q), _meta_text(m.metadata)
            )
        _out().print(table)

    _execute(work)


@app.command(context_settings=_STEP_ARGS)
def show(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.")],
    step: Annotated[str | None, typer.Argument(help="Step (default: the latest).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one checkpoint: its state as highlighted JSON, node, queue and metadata."""

    async def work() -> None:
        at = None if step is None else _parse_step(step)
        async with _open(_db_path(ctx, db)) as cp:
            found = await _require_checkpoint(cp, thread, at)
        if as_json:
            _print_json(_checkpoint_json(found))
            return
        out = _out()
        out.print(
            f"[bold]{found.thread_id}[/] step [bold]{found.step}[/] · node [bold]{found.node}[/]"
            f" · {_time(found.created_at)} UTC",
            highlight=False,
        )
        out.print(f"queue: {_queue_text(list(found.queue))}", markup=False)
        if found.metadata:
            out.print(f"metadata: {_meta_text(found.metadata)}", markup=False)
        out.print_json(_dumps(_state_json(found)))

    _execute(work)


# --- diff ---------------------------------------------------------------------------------------


def diff_values(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """What changed from ``before`` to ``after`` (decoded JSON), field by field.

    Objects are compared key by key (nested paths as ``a.b``); a list that only
    grew at the end is reported as ``appended`` with the new items; anything
    else that differs is ``changed``. Values compare as JSON (``1`` ≠ ``true``).
    """
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append(
                    {"field": sub, "change": "removed", "before": before[key], "after": None}
                )
            elif key not in before:
                out.append({"field": sub, "change": "added", "before": None, "after": after[key]})
            else:
                out += diff_values(before[key], after[key], sub)
        return out
    if _same(before, after):
        return []
    field = path or "(state)"
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and len(after) > len(before)
        and _same(before, after[: len(before)])
    ):
        return [
            {"field": field, "change": "appended", "before": None, "after": after[len(before) :]}
        ]
    return [{"field": field, "change": "changed", "before": before, "after": after}]


def _same(a: Any, b: Any) -> bool:
    return _dumps(a, indent=None) == _dumps(b, indent=None)


def _short(value: Any, width: int = 60) -> str:
    text = _dumps(value, indent=None)
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command(context_settings=_STEP_ARGS)
def diff(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.")],
    step_a: Annotated[str, typer.Argument(help="The earlier step.")],
    step_b: Annotated[str, typer.Argument(help="The later step.")],
    other_thread: Annotated[
        str | None,
        typer.Option("--other-thread", help="Read STEP_B from this thread (compare two threads)."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed in the state between two steps, field by field (also across threads)."""

    async def work() -> None:
        a, b = _parse_step(step_a, "STEP_A"), _parse_step(step_b, "STEP_B")
        thread_b = other_thread or thread
        async with _open(_db_path(ctx, db)) as cp:
            first = await _require_checkpoint(cp, thread, a)
            second = await _require_checkpoint(cp, thread_b, b)
        changes = diff_values(_state_json(first), _state_json(second))
        if as_json:
            _print_json(
                {
                    "from": {"thread_id": thread, "step": a, "node": first.node},
                    "to": {"thread_id": thread_b, "step": b, "node": second.node},
                    "changes": changes,
                }
            )
            return
        title = f"{thread} @ {a} ({first.node}) → {thread_b} @ {b} ({second.node})"
        if not changes:
            _out().print(f"{title}: no change in the state", markup=False)
            return
        table = Table("field", "change", "before", "after", title=title)
        for c in changes:
            before = "" if c["change"] in ("added", "appended") else _short(c["before"])
            after = "" if c["change"] == "removed" else _short(c["after"])
            table.add_row(c["field"], c["change"], before, after)
        _out().print(table)

    _execute(work)


# --- tree ---------------------------------------------------------------------------------------


def _status(cp: Checkpoint[JsonState]) -> str:
    if not cp.queue:
        return "done"
    mark = cp.metadata.get("interrupt")
    if mark == "before":
        return f"paused before {cp.queue[0][0]}"
    if mark == "after":
        return f"paused after {cp.node}"
    return f"pending: {cp.queue[0][0]}"


@app.command()
def tree(
    ctx: typer.Context,
    thread: Annotated[str | None, typer.Argument(help="Draw only this thread's subtree.")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Draw the fork lineage of all threads (or of one) as a tree."""

    async def work() -> None:
        async with _open(_db_path(ctx, db)) as cp:
            infos = await _all_threads(cp)
            by_id = {i.thread_id: i for i in infos}
            if thread is not None and thread not in by_id:
                raise UserError(f"no thread {thread!r} in {cp.path}")
            children: dict[str, list[ThreadInfo]] = {}
            for i in infos:
                if i.parent_thread_id is not None and i.parent_thread_id in by_id:
                    children.setdefault(i.parent_thread_id, []).append(i)
            status: dict[str, str] = {}
            for i in infos:
                latest = await cp.load(i.thread_id)
                status[i.thread_id] = "gone" if latest is None else _status(latest)
        roots = (
            [by_id[thread]]
            if thread is not None
            else [i for i in infos if i.parent_thread_id is None or i.parent_thread_id not in by_id]
        )

        def node(info: ThreadInfo, seen: frozenset[str]) -> dict[str, Any]:
            kids = [] if info.thread_id in seen else children.get(info.thread_id, [])
            return {
                "thread_id": info.thread_id,
                "parent_thread_id": info.parent_thread_id,
                "parent_step": info.parent_step,
                "checkpoints": info.checkpoint_count,
                "latest_step": info.latest_step,
                "status": status[info.thread_id],
                "children": [node(k, seen | {info.thread_id}) for k in kids],
            }

        forest = [node(r, frozenset()) for r in roots]
        if as_json:
            _print_json(forest)
            return

        def label(item: dict[str, Any], root: bool) -> str:
            text = f"[bold]{item['thread_id']}[/]"
            if item["parent_thread_id"] is not None:
                if root and item["parent_thread_id"] not in by_id:
                    text += f"  (forked from deleted {item['parent_thread_id']} @ {item['parent_step']})"
                else:
                    text += f"  forked at step {item['parent_step']}"
            return text + f"  · {item['checkpoints']} checkpoints · {item['status']}"

        def grow(branch: Tree, item: dict[str, Any]) -> None:
            for kid in item["children"]:
                grow(branch.add(label(kid, False)), kid)

        out = _out()
        if not forest:
            out.print("no threads")
        for item in forest:
            top = Tree(label(item, True))
            grow(top, item)
            out.print(top)

    _execute(work)


# --- fork, delete -------------------------------------------------------------------------------


@app.command(context_settings=_STEP_ARGS)
def fork(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread to fork.")],
    step: Annotated[str, typer.Argument(help="Last step the fork copies.")],
    new_id: Annotated[
        str | None, typer.Option("--new-id", help="Id for the new thread (default: a UUID).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy THREAD up to STEP into a new thread (time travel); prints the new id."""

    async def work() -> None:
        at = _parse_step(step)
        async with _open(_db_path(ctx, db), create=True) as cp:
            info = await _require_thread(cp, thread)
            try:  # fork() reads the step itself: no need to load the checkpoint first
                new = await cp.fork(thread, at, new_thread_id=new_id)
            except ThreadExists as exc:
                raise UserError(f"thread {new_id!r} already exists") from exc
            except CheckpointNotFound as exc:
                raise _no_checkpoint(info, at) from exc
        if as_json:
            _print_json({"thread_id": new, "parent_thread_id": thread, "parent_step": at})
        else:
            _out().print(f"forked {thread} at step {at} into {new}", markup=False)

    _execute(work)


@app.command()
def delete(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread to delete.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a thread and all its checkpoints (its forks keep their own copies)."""

    async def work() -> None:
        async with _open(_db_path(ctx, db), write=True) as cp:
            info = await _require_thread(cp, thread)
            await cp.delete_thread(thread)
        if as_json:
            _print_json({"deleted": thread, "checkpoints": info.checkpoint_count})
        else:
            _out().print(
                f"deleted thread {thread} ({info.checkpoint_count} checkpoints)", markup=False
            )

    _execute(work)


# --- export, import -----------------------------------------------------------------------------


async def _export(cp: SqliteCheckpointer[JsonState], thread: str | None, out: TextIO) -> int:
    infos = [await _require_thread(cp, thread)] if thread is not None else await _all_threads(cp)
    total = sum(i.checkpoint_count for i in infos)
    written = 0
    out.write(_dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION}, indent=None) + "\n")
    with _progress("exporting", total) as advance:
        for info in infos:
            out.write(_dumps({"kind": "thread", **_thread_json(info)}, indent=None) + "\n")
            async for meta in _history(cp, info.thread_id):
                found = await cp.get(info.thread_id, meta.seq)
                if found is None:  # pruned or deleted while we read; export what exists
                    continue
                out.write(
                    _dumps({"kind": "checkpoint", **_checkpoint_json(found)}, indent=None) + "\n"
                )
                written += 1
                advance(1)
    return written


@app.command()
def export(
    ctx: typer.Context,
    thread: Annotated[str | None, typer.Argument(help="Export only this thread.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    db: DbOption = None,
) -> None:
    """Write threads and every checkpoint as JSON lines (stdout by default), for `import`."""

    async def work() -> None:
        async with _open(_db_path(ctx, db)) as cp:
            if output is None:
                await _export(cp, thread, sys.stdout)
                sys.stdout.flush()
                return
            with output.open("w", encoding="utf-8") as f:
                count = await _export(cp, thread, f)
        _err().print(f"exported {count} checkpoints to {output}", markup=False)

    _execute(work)


def _read_export(path: Path) -> tuple[list[ThreadInfo], dict[str, list[Checkpoint[JsonState]]]]:
    """Parse and validate a whole export file; UserError naming the line on any problem."""
    infos: list[ThreadInfo] = []
    rows: dict[str, list[Checkpoint[JsonState]]] = {}
    header_seen = False
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise UserError(f"{path}:{number}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise UserError(f"{path}:{number}: expected a JSON object")
            if not header_seen:
                if record.get("format") != EXPORT_FORMAT:
                    raise UserError(f"{path} is not a forkpoint export (no header line)")
                if record.get("version") != EXPORT_VERSION:
                    raise UserError(
                        f"{path}: export version {record.get('version')!r} is not supported "
                        f"(this forkpoint reads version {EXPORT_VERSION})"
                    )
                header_seen = True
                continue
            kind = record.pop("kind", None)
            try:
                if kind == "thread":
                    info = ThreadInfo.model_validate(record)
                    if info.thread_id in rows:
                        raise UserError(f"{path}:{number}: thread {info.thread_id!r} appears twice")
                    infos.append(info)
                    rows[info.thread_id] = []
                elif kind == "checkpoint":
                    cp = Checkpoint[JsonState].model_validate(
                        {**record, "state": {"data": record.get("state")}}
                    )
                    if not infos or cp.thread_id != infos[-1].thread_id:
                        raise UserError(
                            f"{path}:{number}: checkpoint of {cp.thread_id!r} "
                            "does not follow its thread record"
                        )
                    rows[cp.thread_id].append(cp)
                else:
                    raise UserError(f"{path}:{number}: unknown record kind {kind!r}")
            except (ValidationError, CheckpointError) as exc:
                first = str(exc).splitlines()
                raise UserError(
                    f"{path}:{number}: invalid {kind} record: {' '.join(first[:3])}"
                ) from exc
    if not header_seen:
        raise UserError(f"{path} is empty, not a forkpoint export")
    for info in infos:  # every thread is whole before import writes any of them
        try:
            check_restore(info, rows[info.thread_id])
        except CheckpointError as exc:
            raise UserError(f"{path}: {_one_line(exc)}") from exc
    return infos, rows


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A file written by `forkpoint export`.")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recreate exported threads exactly (times, lineage, metadata, every checkpoint)."""

    async def work() -> None:
        if not file.is_file():
            raise UserError(f"no export file at {str(file)!r}")
        infos, rows = _read_export(file)
        async with _open(_db_path(ctx, db), create=True) as cp:
            taken = [i.thread_id for i in infos if await cp.thread_info(i.thread_id) is not None]
            if taken:
                more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
                raise UserError(
                    f"thread {taken[0]!r}{more} already exists in {cp.path}; nothing was imported"
                )
            total = sum(len(v) for v in rows.values())
            with _progress("importing", total) as advance:
                for info in infos:
                    await cp.restore_thread(info, rows[info.thread_id])
                    advance(len(rows[info.thread_id]))
        summary = {"threads": len(infos), "checkpoints": total}
        if as_json:
            _print_json(summary)
        else:
            _out().print(f"imported {len(infos)} threads, {total} checkpoints", markup=False)

    _execute(work)


# --- migrate, check, stats ----------------------------------------------------------------------


def _ro_connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)


def _revision(path: Path) -> str | None:
    """The alembic revision stamped in the file, or None (missing, empty or unreadable)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    from .migrate import database_revision

    try:
        conn = _ro_connect(path)
        try:
            return database_revision(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return None


@app.command()
def migrate(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Upgrade the database schema to this forkpoint's head (creating the file if missing)."""

    async def work() -> None:
        path = _db_path(ctx, db)
        existed = path.exists()
        before = _revision(path)
        async with _open(path, migrate=True, create=True):
            pass
        if as_json:
            _print_json(
                {"path": str(path), "from": before, "to": HEAD_REVISION, "created": not existed}
            )
        elif not existed:
            _out().print(f"created {path} at schema revision {HEAD_REVISION}", markup=False)
        elif before == HEAD_REVISION:
            _out().print(f"{path} is already at schema revision {HEAD_REVISION}", markup=False)
        else:
            _out().print(f"migrated {path} from {before} to {HEAD_REVISION}", markup=False)

    _execute(work)


@app.command()
def check(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Check SQLite integrity, the schema revision, and that every checkpoint decodes as JSON."""

    async def work() -> int:
        problems: list[str] = []
        async with _open(_db_path(ctx, db)) as cp:
            integrity = await cp.integrity_check()
            if integrity != ["ok"]:
                problems += [f"integrity: {line}" for line in integrity]
            infos = await _all_threads(cp)
            checked = undecodable = mismatched = 0
            with _progress("checking", sum(i.checkpoint_count for i in infos)) as advance:
                for info in infos:
                    steps: list[int] = []
                    async for meta in _history(cp, info.thread_id):
                        steps.append(meta.seq)
                        try:
                            if await cp.get(info.thread_id, meta.seq) is None:
                                problems.append(f"{info.thread_id} @ {meta.seq}: row vanished")
                                undecodable += 1
                        except SerializationError as exc:
                            problems.append(f"{info.thread_id} @ {meta.seq}: {_one_line(exc)}")
                            undecodable += 1
                        checked += 1
                        advance(1)
                    if len(steps) != info.checkpoint_count or (
                        steps and steps[-1] != info.latest_step
                    ):
                        mismatched += 1
                        problems.append(
                            f"{info.thread_id}: thread record says {info.checkpoint_count} "
                            f"checkpoints up to step {info.latest_step}, found {len(steps)}"
                            f" up to {steps[-1] if steps else '-'}"
                        )
        report: dict[str, Any] = {
            "ok": not problems,
            "integrity": integrity,
            "revision": HEAD_REVISION,
            "threads": len(infos),
            "checkpoints": checked,
            "problems": problems,
        }
        if as_json:
            _print_json(report)
        else:
            table = Table("check", "result")
            table.add_row("SQLite integrity", ", ".join(integrity))
            table.add_row("schema revision", f"{HEAD_REVISION} (head)")
            table.add_row(
                "checkpoints decode",
                f"{checked - undecodable} of {checked} in {len(infos)} threads",
            )
            table.add_row("thread records match", f"{len(infos) - mismatched} of {len(infos)}")
            out = _out()
            out.print(table)
            for p in problems:
                out.print(f"problem: {p}", markup=False)
            out.print("ok" if not problems else f"{len(problems)} problems", markup=False)
        return 0 if not problems else 1

    _execute(work)


@app.command()
def stats(
    ctx: typer.Context,
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", min=0, help="How many largest threads to list.")] = 5,
    as_json: JsonOption = False,
) -> None:
    """Threads, checkpoints, bytes on disk and reclaimable, and the largest threads."""

    async def work() -> None:
        path = _db_path(ctx, db)
        async with _open(path) as cp:
            infos = await _all_threads(cp)
            storage = await cp.storage_stats()
            stored, latest_bytes = storage.stored_bytes, storage.latest_bytes
            total = sum(i.checkpoint_count for i in infos)
            largest = sorted(infos, key=lambda i: (-stored.get(i.thread_id, 0), i.thread_id))[:top]
        file_bytes, wal_bytes = _file_bytes(path)
        report: dict[str, Any] = {
            "path": str(path),
            "threads": len(infos),
            "forks": sum(1 for i in infos if i.parent_thread_id is not None),
            "checkpoints": total,
            "stored_state_bytes": sum(stored.values()),
            "file_bytes": file_bytes,
            "wal_bytes": wal_bytes,
            "database_bytes": storage.page_size * storage.page_count,
            "free_bytes": storage.page_size * storage.freelist_count,
            "largest_threads": [
                {
                    "thread_id": i.thread_id,
                    "checkpoints": i.checkpoint_count,
                    "latest_step": i.latest_step,
                    "stored_bytes": stored.get(i.thread_id, 0),
                    "latest_state_bytes": latest_bytes.get(i.thread_id, 0),
                }
                for i in largest
            ],
        }
        if as_json:
            _print_json(report)
            return
        out = _out()
        summary = Table("", "", show_header=False, title=str(path))
        summary.add_row("threads", f"{report['threads']} ({report['forks']} forks)")
        summary.add_row("checkpoints", str(report["checkpoints"]))
        summary.add_row("stored states (full or delta)", _size(report["stored_state_bytes"]))
        summary.add_row(
            "file", f"{_size(report['file_bytes'])} (+ WAL {_size(report['wal_bytes'])})"
        )
        summary.add_row("free (vacuum reclaims)", _size(report["free_bytes"]))
        out.print(summary)
        if largest:
            table = Table("largest threads", "checkpoints", "latest step", "stored", "latest state")
            for item in report["largest_threads"]:
                table.add_row(
                    item["thread_id"],
                    str(item["checkpoints"]),
                    str(item["latest_step"]),
                    _size(item["stored_bytes"]),
                    _size(item["latest_state_bytes"]),
                )
            out.print(table)

    _execute(work)


# --- prune, vacuum ------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w`` (or a number of seconds) as a timedelta."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise UserError(f"duration must look like 90s, 15m, 12h, 7d or 2w, not {text!r}")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])


@app.command()
def prune(
    ctx: typer.Context,
    thread: Annotated[str | None, typer.Argument(help="Prune only this thread.")] = None,
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="Keep each thread's newest N checkpoints.")
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Remove only checkpoints older than this (e.g. 7d)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be removed; remove nothing.")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove old checkpoints (never a thread's latest); then `vacuum` returns the space."""

    async def work() -> None:
        if keep_last is None and older_than is None:
            raise UserError("give --keep-last N, --older-than DURATION, or both")
        if keep_last is not None and keep_last < 1:
            raise UserError(f"--keep-last must be at least 1, not {keep_last}")
        age = None if older_than is None else parse_duration(older_than)
        async with _open(_db_path(ctx, db), write=True) as cp:
            if thread is not None:
                await _require_thread(cp, thread)
            with _spinner("pruning…"):
                report = await cp.prune(
                    thread, keep_last=keep_last, older_than=age, dry_run=dry_run
                )
        if as_json:
            _print_json(report.model_dump(mode="json"))
            return
        verb = "would remove" if dry_run else "removed"
        text = (
            f"{verb} {report.checkpoints_removed} checkpoints from {report.threads_touched} "
            f"threads ({_size(report.bytes_freed)})"
        )
        if not dry_run and report.checkpoints_removed:
            text += "; run `forkpoint vacuum` to give the space back to the file system"
        _out().print(text, markup=False)

    _execute(work)


@app.command()
def vacuum(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Give free space back to the file system (WAL checkpoint + vacuum)."""

    async def work() -> None:
        path = _db_path(ctx, db)
        async with _open(path, write=True) as cp:
            before = sum(_file_bytes(path))
            with _spinner("vacuuming…"):
                shrunk = await cp.vacuum()
        after = sum(_file_bytes(path))
        if as_json:
            _print_json({"before_bytes": before, "after_bytes": after, "reclaimed_bytes": shrunk})
        else:
            _out().print(
                f"vacuumed {path}: {_size(before)} → {_size(after)} ({_size(shrunk)} reclaimed)",
                markup=False,
            )

    _execute(work)


def main() -> None:
    """Console-script entry point (``forkpoint``)."""
    app()


if __name__ == "__main__":
    main()
