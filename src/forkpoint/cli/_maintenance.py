"""``migrate``, ``check``, ``stats``, ``prune`` and ``vacuum``: keeping a database healthy and small."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from ..errors import SerializationError
from ..migrate import HEAD_REVISION, database_revision
from ..sqlite import SqliteCheckpointer
from ..state_check import StateCheckReport
from ._app import (
    DbOption,
    JsonOption,
    YesOption,
    command,
    db_path,
    open_db,
    require_thread,
    sqlite_path,
    where,
)
from ._args import DURATION_HELP, UsageError, UserError, confirm, parse_duration
from ._reads import all_threads, checkpoints
from ._states import StateOption, check_summary, load_state_class, problem_lines, state_progress
from ._text import Grid, echo, err, one_line, plural, print_json, progress, size, spinner

__all__ = ["check", "migrate", "prune", "stats", "vacuum"]


def _revision(path: Path) -> str | None:
    """The schema revision stamped in the file, or None (missing, empty or unreadable)."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
        try:
            return database_revision(conn)
        finally:
            conn.close()
    except sqlite3.Error:
        return None


@command()
async def migrate(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Upgrade the database schema to this forkpoint's head (creating the file if missing)."""
    path = db_path(ctx, db)
    if isinstance(path, str):  # PostgreSQL: the schema is created or upgraded in place
        async with open_db(path, migrate=True) as cp:
            shown = where(cp)
        if as_json:
            print_json({"path": shown, "to": HEAD_REVISION})
        else:
            echo(f"{shown} is at schema revision {HEAD_REVISION}")
        return
    existed = path.exists()
    before = _revision(path)
    async with open_db(path, migrate=True, create=True):
        pass
    if as_json:
        print_json({"path": str(path), "from": before, "to": HEAD_REVISION, "created": not existed})
    elif not existed:
        echo(f"created {path} at schema revision {HEAD_REVISION}")
    elif before == HEAD_REVISION:
        echo(f"{path} is already at schema revision {HEAD_REVISION}")
    else:
        echo(f"migrated {path} from {before} to {HEAD_REVISION}")


@command()
async def check(
    ctx: typer.Context,
    state: StateOption = None,
    all_steps: Annotated[
        bool,
        typer.Option(
            "--all-steps",
            help="With --state: read every checkpoint with the class, not only each latest.",
            metavar="",
        ),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> int:
    """Check SQLite integrity, the schema revision, and that every checkpoint decodes as JSON.

    With ``--state MODULE:QUALNAME`` also whether your state class (as you
    are about to deploy it) reads the stored states, upgrade steps included.
    """
    if all_steps and state is None:
        raise UsageError("--all-steps needs --state MODULE:QUALNAME")
    state_type = None if state is None else load_state_class(state)
    states: StateCheckReport | None = None
    problems: list[str] = []
    async with open_db(db_path(ctx, db)) as cp:
        if isinstance(cp, SqliteCheckpointer):
            integrity = await cp.integrity_check()
        else:
            integrity = ["skipped"]
            err().print("forkpoint: integrity check is SQLite-only; skipped", markup=False)
        if integrity not in (["ok"], ["skipped"]):
            problems += [f"integrity: {line}" for line in integrity]
        infos = await all_threads(cp)
        checked = undecodable = mismatched = 0
        with progress("checking", sum(i.checkpoint_count for i in infos)) as advance:
            for info in infos:
                steps: list[int] = []  # newest first
                async for step, found in checkpoints(cp, info.thread_id):
                    advance(1)
                    checked += 1
                    if step is not None:
                        steps.append(step)
                    if isinstance(found, SerializationError):
                        undecodable += 1
                        where = info.thread_id if step is None else f"{info.thread_id} @ {step}"
                        problems.append(f"{where}: {one_line(found)}")
                if len(steps) != info.checkpoint_count or (steps and steps[0] != info.latest_step):
                    mismatched += 1
                    problems.append(
                        f"{info.thread_id}: thread record says "
                        f"{plural(info.checkpoint_count, 'checkpoint')} up to step "
                        f"{info.latest_step}, found {len(steps)} up to {steps[0] if steps else '-'}"
                    )
        if state_type is not None:
            with state_progress("checking states") as report_progress:
                states = await cp.check_states(
                    state_type, all_steps=all_steps, progress=report_progress
                )
    report: dict[str, Any] = {
        "ok": not problems,
        "integrity": integrity,
        "revision": HEAD_REVISION,
        "threads": len(infos),
        "checkpoints": checked,
        "problems": problems,
    }
    if states is not None:
        report["ok"] = report["ok"] and states.ok
        report["states"] = {"ok": states.ok, **states.model_dump(mode="json")}
    if as_json:
        print_json(report)
    else:
        rows = Grid("check", "result")
        rows.add_row("SQLite integrity", ", ".join(integrity))
        rows.add_row("schema revision", f"{HEAD_REVISION} (head)")
        rows.add_row(
            "checkpoints decode",
            f"{checked - undecodable} of {checked} in {plural(len(infos), 'thread')}",
        )
        rows.add_row("thread records match", f"{len(infos) - mismatched} of {len(infos)}")
        rows.print()
        for p in problems:
            echo(f"problem: {p}")
        if states is not None:
            problem_lines(states.threads, states.current_version).print()
            for line in check_summary(states):
                echo(line)
        echo("ok" if report["ok"] else plural(len(problems), "problem") if problems else "not ok")
    return 0 if report["ok"] else 1


def _file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


@command()
async def stats(
    ctx: typer.Context,
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", min=0, help="How many largest threads to list.")] = 5,
    with_bytes: Annotated[
        bool,
        typer.Option(
            "--bytes",
            help="Also measure stored state bytes per thread and free pages "
            "(reads every checkpoint row; the rest reads only thread records).",
            metavar="",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Threads, forks, checkpoints, file and WAL size, and the largest threads.

    Reads the thread records only, so it costs what listing the threads costs;
    ``--bytes`` adds the stored bytes per thread and the free pages, which
    takes one pass over every checkpoint row.
    """
    path = sqlite_path(ctx, db)
    async with open_db(path) as cp:
        assert isinstance(cp, SqliteCheckpointer)  # a file path opens SQLite
        infos = await all_threads(cp)
        storage = await cp.storage_stats() if with_bytes else None
    stored = storage.stored_bytes if storage else {}
    latest = storage.latest_bytes if storage else {}
    if storage:
        largest = sorted(infos, key=lambda i: (-stored.get(i.thread_id, 0), i.thread_id))[:top]
    else:
        largest = sorted(infos, key=lambda i: (-i.checkpoint_count, i.thread_id))[:top]

    def measured(value: int) -> int | None:
        return value if storage else None

    report: dict[str, Any] = {
        "path": str(path),
        "threads": len(infos),
        "forks": sum(1 for i in infos if i.parent_thread_id is not None),
        "checkpoints": sum(i.checkpoint_count for i in infos),
        "file_bytes": _file_size(path),
        "wal_bytes": _file_size(_wal(path)),
        "stored_state_bytes": measured(sum(stored.values())),
        "database_bytes": storage.page_size * storage.page_count if storage else None,
        "free_bytes": storage.page_size * storage.freelist_count if storage else None,
        "largest_threads": [
            {
                "thread_id": i.thread_id,
                "checkpoints": i.checkpoint_count,
                "latest_step": i.latest_step,
                "stored_bytes": measured(stored.get(i.thread_id, 0)),
                "latest_state_bytes": measured(latest.get(i.thread_id, 0)),
            }
            for i in largest
        ],
    }
    if as_json:
        print_json(report)
        return
    summary = Grid("", "", title=str(path), show_header=False)
    summary.add_row("threads", f"{report['threads']} ({plural(report['forks'], 'fork')})")
    summary.add_row("checkpoints", str(report["checkpoints"]))
    summary.add_row("file", f"{size(report['file_bytes'])} (+ WAL {size(report['wal_bytes'])})")
    if storage:
        summary.add_row("stored states (full or delta)", size(report["stored_state_bytes"]))
        summary.add_row("free (vacuum reclaims)", size(report["free_bytes"]))
    summary.print()
    if largest:
        columns = ["largest threads", "checkpoints", "latest step"]
        rows = Grid(*columns, *(["stored", "latest state"] if storage else []))
        for item in report["largest_threads"]:
            cells = [item["thread_id"], str(item["checkpoints"]), str(item["latest_step"])]
            if storage:
                cells += [size(item["stored_bytes"]), size(item["latest_state_bytes"])]
            rows.add_row(*cells)
        rows.print()
    if not storage:  # a hint, not data: stderr, so a pipe gets the listing alone
        err().print("stored bytes per thread and free pages: forkpoint stats --bytes", markup=False)


@command()
async def prune(
    ctx: typer.Context,
    thread: Annotated[
        str | None, typer.Argument(help="Prune only this thread.", show_default=False)
    ] = None,
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="Keep each thread's newest N checkpoints.")
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help=f"Remove only checkpoints older than this: {DURATION_HELP}.",
            metavar="<duration>",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Report what would be removed; remove nothing.", metavar=""),
    ] = False,
    yes: YesOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove old checkpoints (never a thread's latest); then `vacuum` returns the space."""
    if keep_last is None and older_than is None:
        raise UserError("give --keep-last N, --older-than DURATION, or both")
    if keep_last is not None and keep_last < 1:
        raise UserError(f"--keep-last must be at least 1, not {keep_last}")
    age = None if older_than is None else parse_duration(older_than)
    async with open_db(db_path(ctx, db), write=True) as cp:
        if thread is not None:
            await require_thread(cp, thread)
        if not dry_run and not yes:
            planned = await cp.prune(thread, keep_last=keep_last, older_than=age, dry_run=True)
            if planned.checkpoints_removed:  # nothing to remove: nothing to ask
                confirm(
                    f"Remove {plural(planned.checkpoints_removed, 'checkpoint')} from "
                    f"{plural(planned.threads_touched, 'thread')} ({size(planned.bytes_freed)})?",
                    yes=yes,
                )
        with spinner("pruning…"):
            report = await cp.prune(thread, keep_last=keep_last, older_than=age, dry_run=dry_run)
    if as_json:
        print_json(report.model_dump(mode="json"))
        return
    verb = "would remove" if report.dry_run else "removed"
    text = (
        f"{verb} {plural(report.checkpoints_removed, 'checkpoint')} from "
        f"{plural(report.threads_touched, 'thread')} ({size(report.bytes_freed)})"
    )
    if not report.dry_run and report.checkpoints_removed:
        text += "; run `forkpoint vacuum` to give the space back to the file system"
    echo(text)


@command()
async def vacuum(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Give free space back to the file system (WAL checkpoint + vacuum).

    Reports the size of the database file itself before and after: the
    write-ahead log is truncated too, but that is no space the data took.
    """
    path = db_path(ctx, db)
    if isinstance(path, str):  # PostgreSQL: VACUUM FULL, which locks the tables while it runs
        from ..postgres import PostgresCheckpointer  # a URL opened: the extra is installed

        async with open_db(path, write=True) as pg:
            assert isinstance(pg, PostgresCheckpointer)  # a postgresql:// URL opens PostgreSQL
            shown = where(pg)
            with spinner("vacuuming (VACUUM FULL locks forkpoint's tables meanwhile)…"):
                freed = await pg.vacuum(full=True)
        if as_json:
            print_json({"reclaimed_bytes": freed})
        else:
            echo(
                f"vacuumed {shown} (VACUUM FULL, tables locked meanwhile): {size(freed)} reclaimed"
            )
        return
    async with open_db(path, write=True) as cp:
        assert isinstance(cp, SqliteCheckpointer)  # a file path opens SQLite
        before, wal_before = _file_size(path), _file_size(_wal(path))
        with spinner("vacuuming…"):
            await cp.vacuum()
    after, wal_after = _file_size(path), _file_size(_wal(path))
    shrunk = max(0, before - after)
    if as_json:
        print_json(
            {
                "before_bytes": before,
                "after_bytes": after,
                "reclaimed_bytes": shrunk,
                "wal_before_bytes": wal_before,
                "wal_after_bytes": wal_after,
            }
        )
    else:
        echo(
            f"vacuumed {path}: {size(before)} → {size(after)} ({size(shrunk)} reclaimed; "
            f"write-ahead log {size(wal_before)} → {size(wal_after)})"
        )
