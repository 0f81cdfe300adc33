"""``fork`` and ``delete``: make a thread from another's history, or remove one."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import CheckpointNotFound, ThreadExists
from ._app import (
    DbOption,
    JsonOption,
    YesOption,
    command,
    db_path,
    no_checkpoint,
    open_db,
    require_thread,
    step_argument,
)
from ._args import UserError, confirm
from ._text import echo, plural, print_json

__all__ = ["delete", "fork"]


@command(takes_steps=True)
async def fork(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread to fork.", show_default=False)],
    step: Annotated[int, step_argument("Last step the fork copies.")],
    new_id: Annotated[
        str | None, typer.Option("--new-id", help="Id for the new thread (default: a UUID).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy THREAD up to STEP into a new thread (time travel); prints the new id."""
    async with open_db(db_path(ctx, db), create=True) as cp:
        info = await require_thread(cp, thread)
        try:  # fork() reads the step itself: no need to load the checkpoint first
            new = await cp.fork(thread, step, new_thread_id=new_id)
        except ThreadExists as exc:
            raise UserError(f"thread {new_id!r} already exists") from exc
        except CheckpointNotFound as exc:
            raise no_checkpoint(info, step) from exc
    if as_json:
        print_json({"thread_id": new, "parent_thread_id": thread, "parent_step": step})
    else:
        echo(f"forked {thread} at step {step} into {new}")


@command()
async def delete(
    ctx: typer.Context,
    thread: Annotated[str, typer.Argument(help="Thread to delete.", show_default=False)],
    yes: YesOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a thread and all its checkpoints (its forks keep their own copies)."""
    async with open_db(db_path(ctx, db), write=True) as cp:
        info = await require_thread(cp, thread)
        confirm(
            f"Delete thread {thread} and its {plural(info.checkpoint_count, 'checkpoint')}?",
            yes=yes,
        )
        await cp.delete_thread(thread)
    if as_json:
        print_json({"deleted": thread, "checkpoints": info.checkpoint_count})
    else:
        echo(f"deleted thread {thread} ({plural(info.checkpoint_count, 'checkpoint')})")
