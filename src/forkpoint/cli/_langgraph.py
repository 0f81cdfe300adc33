"""``forkpoint lg ...`` and ``forkpoint import-langgraph``: the LangGraph saver's threads.

A LangGraph thread is not a list of steps: its checkpoints are addressed by
id, in namespaces (one per subgraph call), with branches sharing parents. So
its commands are a group of their own (``forkpoint lg threads|history|show|
tree|stats|prune|vacuum``) rather than a flag that would make ``show THREAD
STEP`` mean two things. Reading needs no graph classes: the commands run the
read-only row jobs of :mod:`forkpoint.langgraph.browse` and ``store`` on the
file's engine and print values as the JSON they are stored as. ``prune`` and
``vacuum`` go through :class:`~forkpoint.langgraph.ForkpointSaver`'s public
methods. Without the ``langgraph`` extra each command says in one line how to
get it; the rest of the CLI does not need it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

from ..sqlite import SqliteCheckpointer
from ._app import DbOption, JsonOption, YesOption, command, sub_app
from ._app import open_sqlite as open_db  # LangGraph's tables are SQLite-only
from ._app import sqlite_path as db_path
from ._args import DURATION_HELP, UsageError, UserError, confirm, parse_duration
from ._states import import_named
from ._text import Grid, echo, meta_text, plural, print_json, progress_of, size, spinner

__all__ = ["import_langgraph", "lg"]

INSTALL_HINT = "LangGraph commands need the langgraph extra: pip install 'forkpoint[langgraph]'"
ROOT_NS = "(root)"  # how the root namespace ("") is printed in tables

lg = sub_app(
    "lg",
    "LangGraph threads saved by forkpoint's LangGraph saver (forkpoint.langgraph.ForkpointSaver).",
)

NsOption = Annotated[
    str | None,
    typer.Option(
        "--ns", help="Only this checkpoint namespace ('' is the root graph).", show_default=False
    ),
]


def _langgraph() -> ModuleType:
    """``forkpoint.langgraph``, or the one-line install hint as the command's error."""
    try:
        import forkpoint.langgraph as module
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return module


@contextlib.asynccontextmanager
async def _reader(ctx: typer.Context, db: DbOption) -> AsyncIterator[SqliteCheckpointer[Any]]:
    """The database opened read-only (never created), after checking the extra is installed."""
    _langgraph()
    async with open_db(db_path(ctx, db)) as cp:
        yield cp


def _ns(name: str) -> str:
    return name if name else ROOT_NS


async def _require_thread(cp: SqliteCheckpointer[Any], thread_id: str) -> list[Any]:
    from ..langgraph import browse

    found = await cp.engine.read(browse.namespaces, thread_id)
    if not found:
        raise UserError(f"no LangGraph thread {thread_id!r} in {cp.path}")
    return found


@command("threads", on=lg)
async def threads(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """LangGraph threads with their namespaces, checkpoint counts and newest checkpoint time."""
    async with _reader(ctx, db) as cp:
        from ..langgraph import browse

        rows = await cp.engine.read(browse.namespaces, None)
    if as_json:
        print_json([r._asdict() for r in rows])
        return
    grid = Grid("thread", "namespace", "checkpoints", "latest (UTC)")
    for r in rows:
        grid.add_row(r.thread_id, _ns(r.checkpoint_ns), str(r.checkpoints), r.latest)
    grid.print()


def _history_item(row: Any) -> dict[str, Any]:
    metadata = json.loads(row.metadata)
    return {
        "checkpoint_ns": row.checkpoint_ns,
        "checkpoint_id": row.checkpoint_id,
        "step": metadata.get("step") if isinstance(metadata, dict) else None,
        "source": metadata.get("source") if isinstance(metadata, dict) else None,
        "parent_checkpoint_id": row.parent_checkpoint_id,
        "created_at": row.created_at,
        "metadata": metadata,
    }


@command("history", on=lg)
async def history(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    ns: NsOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Newest N checkpoints only.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """A thread's checkpoints, newest first: id, step, source, parent, time and metadata."""
    async with _reader(ctx, db) as cp:
        from ..langgraph import browse

        await _require_thread(cp, thread)
        rows = await cp.engine.read(browse.history, thread, ns, limit)
    items = [_history_item(r) for r in rows]
    if as_json:
        print_json(items)
        return
    grid = Grid("namespace", "checkpoint", "step", "source", "parent", "created (UTC)", "metadata")
    for item in items:
        rest = {k: v for k, v in (item["metadata"] or {}).items() if k not in ("step", "source")}
        grid.add_row(
            _ns(item["checkpoint_ns"]),
            item["checkpoint_id"],
            "-" if item["step"] is None else str(item["step"]),
            item["source"] or "-",
            item["parent_checkpoint_id"] or "-",
            item["created_at"],
            meta_text(rest) if rest else "-",
        )
    grid.print()


@command("show", on=lg)
async def show(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    checkpoint_id: Annotated[
        str | None,
        typer.Argument(help="Checkpoint id (default: the latest).", show_default=False),
    ] = None,
    ns: Annotated[
        str, typer.Option("--ns", help="Checkpoint namespace ('' is the root graph).")
    ] = "",
    db: DbOption = None,
) -> None:
    """One checkpoint as JSON: metadata, channel values and pending writes, as stored.

    Values of your own classes print as their stored JSON (with their type tag);
    nothing is decoded, so no graph class is needed.
    """
    async with _reader(ctx, db) as cp:
        from ..langgraph import store

        await _require_thread(cp, thread)
        row = await cp.engine.read(store.get_checkpoint, thread, ns, checkpoint_id)
    if row is None:
        what = "no checkpoints" if checkpoint_id is None else f"no checkpoint {checkpoint_id!r}"
        raise UserError(f"thread {thread!r} has {what} in namespace {ns!r}")
    checkpoint = json.loads(row.checkpoint)
    print_json(
        {
            "thread_id": row.thread_id,
            "checkpoint_ns": row.checkpoint_ns,
            "checkpoint_id": row.checkpoint_id,
            "parent_checkpoint_id": row.parent_checkpoint_id,
            "metadata": json.loads(row.metadata),
            "channel_versions": checkpoint.get("channel_versions", {}),
            "channel_values": {
                channel: None if text is None else json.loads(text)
                for channel, text in sorted(row.values.items())
            },
            "pending_writes": [
                {"task_id": task, "channel": channel, "value": json.loads(text), "idx": idx}
                for task, channel, text, _path, idx in row.writes
            ],
        }
    )


@command("tree", on=lg)
async def tree(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    ns: NsOption = None,
    db: DbOption = None,
) -> None:
    """A thread's checkpoints as branches (parent → children), one namespace after another."""
    async with _reader(ctx, db) as cp:
        from ..langgraph import browse

        await _require_thread(cp, thread)
        rows = list(reversed(await cp.engine.read(browse.history, thread, ns, None)))
    by_ns: dict[str, list[Any]] = {}
    for row in rows:
        by_ns.setdefault(row.checkpoint_ns, []).append(row)
    lines: list[str] = [thread]
    for name, members in by_ns.items():
        lines.append(f"  namespace {_ns(name)}")
        ids = {r.checkpoint_id for r in members}
        children: dict[str | None, list[Any]] = {}
        for r in members:
            parent = r.parent_checkpoint_id if r.parent_checkpoint_id in ids else None
            children.setdefault(parent, []).append(r)
        stack = [(r, 2) for r in reversed(children.get(None, []))]
        while stack:
            row, depth = stack.pop()
            item = _history_item(row)
            step = "-" if item["step"] is None else item["step"]
            lines.append(f"{'  ' * depth}{row.checkpoint_id}  step {step} {item['source'] or '-'}")
            kids = children.get(row.checkpoint_id, [])
            # a single child continues the line; several are branches, indented one level
            indent = depth if len(kids) == 1 else depth + 1
            stack += [(k, indent) for k in reversed(kids)]
    for line in lines:
        echo(line)


@command("stats", on=lg)
async def stats(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Rows and stored JSON bytes per LangGraph table, threads and checkpoints."""
    path = db_path(ctx, db)
    async with _reader(ctx, db) as cp:
        from ..langgraph import browse

        tables = await cp.engine.read(browse.tables)
        spaces = await cp.engine.read(browse.namespaces, None)
    report = {
        "path": str(path),
        "threads": len({r.thread_id for r in spaces}),
        "namespaces": len(spaces),
        "file_bytes": path.stat().st_size,
        "tables": [t._asdict() for t in tables],
    }
    if as_json:
        print_json(report)
        return
    summary = Grid("", "", title=str(path), show_header=False)
    summary.add_row("threads", f"{report['threads']} ({plural(len(spaces), 'namespace')})")
    summary.add_row("file", size(path.stat().st_size))
    summary.print()
    grid = Grid("table", "rows", "stored JSON")
    for t in tables:
        grid.add_row(t.table, str(t.rows), size(t.json_bytes))
    grid.print()


@contextlib.asynccontextmanager
async def _saver(ctx: typer.Context, db: DbOption) -> AsyncIterator[Any]:
    """The existing database opened with ``ForkpointSaver`` (refused if missing: never created)."""
    module = _langgraph()
    path = db_path(ctx, db)
    async with open_db(path):  # existence, type and schema checks, with the CLI's messages
        pass
    saver = module.ForkpointSaver(path)
    try:
        yield saver
    finally:
        await saver.aclose()


@command("prune", on=lg)
async def prune(
    ctx: typer.Context,
    thread: Annotated[
        list[str] | None,
        typer.Argument(
            help="Threads to prune (default with --all: every thread).", show_default=False
        ),
    ] = None,
    all_threads: Annotated[
        bool, typer.Option("--all", help="Prune every thread.", metavar="")
    ] = False,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help=f"Instead: delete whole threads with no checkpoint newer than this: {DURATION_HELP}.",
            metavar="<duration>",
        ),
    ] = None,
    yes: YesOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Keep only each namespace's latest checkpoint, or delete threads idle for --older-than.

    Then `forkpoint lg vacuum` gives the space back to the file system.
    """
    wanted = list(thread or [])
    if older_than is not None and (wanted or all_threads):
        raise UsageError("--older-than deletes idle threads: give no thread ids or --all with it")
    if older_than is None and not wanted and not all_threads:
        raise UsageError("give thread ids, --all, or --older-than DURATION")
    if wanted and all_threads:
        raise UsageError("give thread ids or --all, not both")
    age = None if older_than is None else parse_duration(older_than)
    async with _saver(ctx, db) as saver, open_db(db_path(ctx, db)) as cp:
        from ..langgraph import browse

        spaces = await cp.engine.read(browse.namespaces, None)
        known = sorted({r.thread_id for r in spaces})
        if age is not None:
            idle = [t for t in known if _idle(spaces, t, age)]
            if idle:
                confirm(
                    f"Delete {plural(len(idle), 'idle thread')} and all their checkpoints?", yes=yes
                )
            with spinner("deleting…"):
                removed = await saver.adelete_inactive(age)
            result: dict[str, Any] = {"threads_deleted": removed}
            text = f"deleted {plural(len(removed), 'idle thread')}" + (
                f": {', '.join(removed)}" if removed else ""
            )
        else:
            targets = known if all_threads else wanted
            missing = [t for t in targets if t not in known]
            if missing:
                raise UserError(f"no LangGraph thread {missing[0]!r} in {saver.path}")
            planned = await cp.engine.read(browse.prunable, targets)
            if planned:
                confirm(
                    f"Remove {plural(planned, 'checkpoint')} from {plural(len(targets), 'thread')}?",
                    yes=yes,
                )
                with spinner("pruning…"):
                    await saver.aprune(targets)
            result = {"threads": targets, "checkpoints_removed": planned}
            text = f"removed {plural(planned, 'checkpoint')} from {plural(len(targets), 'thread')}"
    if as_json:
        print_json(result)
        return
    echo(text + ("; run `forkpoint lg vacuum` to give the space back" if "removed" in text else ""))


def _idle(spaces: list[Any], thread_id: str, age: Any) -> bool:
    from datetime import UTC, datetime

    from ..codec import format_time

    cutoff = format_time(datetime.now(UTC) - age)
    return bool(max(r.latest for r in spaces if r.thread_id == thread_id) < cutoff)


@command("vacuum", on=lg)
async def vacuum(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Give the space pruned checkpoints took back to the file system (through the saver)."""
    path = db_path(ctx, db)
    async with _saver(ctx, db) as saver:
        before = path.stat().st_size
        with spinner("vacuuming…"):
            await saver.avacuum()
    after = path.stat().st_size
    if as_json:
        print_json({"before_bytes": before, "after_bytes": after})
    else:
        echo(f"vacuumed {path}: {size(before)} → {size(after)}")


@command("import-langgraph")
async def import_langgraph(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(help="LangGraph SQLite database (SqliteSaver's file).", show_default=False),
    ],
    thread: Annotated[
        list[str] | None,
        typer.Option("--thread", help="Copy only this thread (repeatable).", show_default=False),
    ] = None,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            help="A class of your own stored in the threads, as MODULE:QUALNAME (repeatable; "
            "a pydantic model, dataclass or enum, imported from the current directory first).",
            metavar="<module:class>",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> int:
    """Copy a LangGraph SQLite database's threads into a forkpoint database (--db, created if new).

    LangGraph's msgpack is decoded with a fixed allowlist (standard types,
    LangChain messages and documents, LangGraph's own types) that never
    imports by name: a checkpoint or write holding anything else (a class of
    your own not named with ``--type``, a pickle) is reported and skipped,
    never run. The source file is only read. Exit status 1 if anything was
    skipped.
    """
    module = _langgraph()
    target = db_path(ctx, db)
    if not source.is_file():
        raise UserError(f"no LangGraph database at {str(source)!r}")
    if target.exists() and target.resolve() == source.resolve():
        raise UsageError("the forkpoint database (--db) must be another file than the source")
    if target.exists():
        async with open_db(target, migrate=True):  # refuse a non-forkpoint file, as everywhere
            pass
    classes = [import_named(spec, "--type") for spec in types or ()]
    for spec, cls in zip(types or (), classes, strict=True):
        if not isinstance(cls, type):
            raise UsageError(f"--type {spec}: not a class")
    saver = module.ForkpointSaver(target, schemas=classes)
    try:
        with progress_of("importing") as report_progress:
            report = await module.import_langgraph(
                source, saver, thread_ids=thread, progress=report_progress
            )
    finally:
        await saver.aclose()
    new_bytes = target.stat().st_size  # after close: the write-ahead log is folded in
    result = {
        "source": str(source),
        "target": str(target),
        "threads": report.threads,
        "checkpoints": report.checkpoints,
        "writes": report.writes,
        "skipped": report.skipped,
        "source_bytes": report.source_bytes,
        "target_bytes": new_bytes,
        "smaller_by": round(report.source_bytes / new_bytes, 2) if new_bytes else None,
    }
    if as_json:
        print_json(result)
    else:
        echo(
            f"imported {plural(report.threads, 'thread')}, {plural(report.checkpoints, 'checkpoint')}"
            f" and {plural(report.writes, 'pending write')} into {target}"
        )
        echo(
            f"size: {size(report.source_bytes)} → {size(new_bytes)}"
            + (f" (old/new = {result['smaller_by']})" if new_bytes else "")
        )
        for line in report.skipped:
            echo(f"not imported: {line}")
    return 1 if report.skipped else 0
