"""``threads``, ``history`` and ``show``: what a database holds, thread by thread, step by step."""

from __future__ import annotations

from typing import Annotated

import typer

from ..codec import format_time
from ..transfer import checkpoint_record, thread_record
from ._app import (
    DbOption,
    JsonOption,
    command,
    db_path,
    open_db,
    require_checkpoint,
    require_thread,
    step_argument,
)
from ._reads import all_threads
from ._reads import history as read_history
from ._text import Grid, clock, dumps, echo, meta_text, out, print_json, queue_text, stamp

__all__ = ["history", "show", "threads"]


@command()
async def threads(ctx: typer.Context, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List threads with their lineage (parent, forks) and checkpoint counts."""
    async with open_db(db_path(ctx, db)) as cp:
        infos = await all_threads(cp)
    forks: dict[str, int] = {}
    for info in infos:
        if info.parent_thread_id is not None:
            forks[info.parent_thread_id] = forks.get(info.parent_thread_id, 0) + 1
    if as_json:
        print_json(
            [
                {
                    **thread_record(i),
                    "latest_node": i.latest_node,
                    "status": i.status,
                    "forks": forks.get(i.thread_id, 0),
                }
                for i in infos
            ]
        )
        return
    if not infos:
        echo("no threads")
        return
    rows = Grid("thread", "checkpoints", "latest", "node", "forked from", "forks", "updated")
    for i in infos:
        parent = f"{i.parent_thread_id} @ {i.parent_step}" if i.parent_thread_id else "-"
        rows.add_row(
            i.thread_id,
            str(i.checkpoint_count),
            str(i.latest_step),
            i.latest_node,
            parent,
            str(forks.get(i.thread_id, 0)),
            stamp(i.updated_at),
        )
    rows.print()


@command()
async def history(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    last: Annotated[
        int | None, typer.Option("--last", min=1, help="Only the newest N checkpoints.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """List a thread's checkpoints: step, time, node that finished, pending queue, metadata."""
    async with open_db(db_path(ctx, db)) as cp:
        await require_thread(cp, thread)
        rows = await read_history(cp, thread, last)
    if as_json:
        print_json(
            [
                {
                    "step": m.step,
                    "created_at": format_time(m.created_at),
                    "node": m.node,
                    "queue": [[n, p] for n, p in m.queue],
                    "metadata": m.metadata,
                }
                for m in rows
            ]
        )
        return
    day = stamp(rows[0].created_at)[:10] if rows else ""
    listing = Grid(
        "step", "time", "node", "queue (node/path)", "metadata", title=f"{thread} · {day} UTC"
    )
    for m in rows:
        listing.add_row(
            str(m.step), clock(m.created_at), m.node, queue_text(m.queue), meta_text(m.metadata)
        )
    listing.print()


@command(takes_steps=True)
async def show(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    step: Annotated[int | None, step_argument("Step (default: the latest).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one checkpoint: its state as highlighted JSON, node, queue and metadata."""
    async with open_db(db_path(ctx, db)) as cp:
        found = await require_checkpoint(cp, thread, step)
    if as_json:
        print_json(checkpoint_record(found))
        return
    echo(f"{found.thread_id} step {found.step} · node {found.node} · {stamp(found.created_at)} UTC")
    echo(f"queue: {queue_text(list(found.queue))}")
    if found.metadata:
        echo(f"metadata: {meta_text(found.metadata)}")
    out().print_json(dumps(found.state.data.model_dump(mode="json")))
