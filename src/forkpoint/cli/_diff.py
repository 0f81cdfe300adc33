"""``diff``: what changed in the state between two steps (of one thread or two)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..jsondiff import diff_values
from ._app import DbOption, JsonOption, command, db_path, open_db, require_checkpoint, step_argument
from ._text import Grid, echo, print_json, short

__all__ = ["diff"]


@command(takes_steps=True)
async def diff(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread id.", show_default=False)],
    step_a: Annotated[int, step_argument("The earlier step.")],
    step_b: Annotated[int, step_argument("The later step.")],
    other_thread: Annotated[
        str | None,
        typer.Option("--other-thread", help="Read STEP_B from this thread (compare two threads)."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """What changed in the state between two steps, field by field (also across threads)."""
    thread_b = other_thread or thread
    async with open_db(db_path(ctx, db)) as cp:
        first = await require_checkpoint(cp, thread, step_a)
        second = await require_checkpoint(cp, thread_b, step_b)
    changes = diff_values(
        first.state.data.model_dump(mode="json"), second.state.data.model_dump(mode="json")
    )
    if as_json:
        print_json(
            {
                "from": {"thread_id": thread, "step": step_a, "node": first.node},
                "to": {"thread_id": thread_b, "step": step_b, "node": second.node},
                "changes": changes,
            }
        )
        return
    title = f"{thread} @ {step_a} ({first.node}) → {thread_b} @ {step_b} ({second.node})"
    if not changes:
        echo(f"{title}: no change in the state")
        return
    rows = Grid("field", "change", "before", "after", title=title)
    for c in changes:
        before = "" if c["change"] in ("added", "appended") else short(c["before"])
        after = "" if c["change"] == "removed" else short(c["after"])
        rows.add_row(c["field"], c["change"], before, after)
    rows.print()
