"""``copy``: move threads (lineage, metadata, times) between any two databases."""

from __future__ import annotations

from typing import Annotated

import typer

from ..copying import copy_threads
from ..models import ThreadInfo
from ._app import JsonOption, command, db_path, open_db
from ._text import echo, plural, print_json

__all__ = ["copy"]


@command()
async def copy(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Database file or postgresql:// URL to read.")],
    dest: Annotated[
        str,
        typer.Argument(help="Database file or postgresql:// URL to write (created if missing)."),
    ],
    thread: Annotated[
        list[str] | None,
        typer.Option(
            "--thread", help="Copy only this thread (repeatable; default: all).", show_default=False
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Copy threads whole from SOURCE into DEST; refuses, writing nothing, if DEST has any of them."""

    def done(info: ThreadInfo) -> None:
        if not as_json:
            echo(f"copied {info.thread_id} ({plural(info.checkpoint_count, 'checkpoint')})")

    async with (
        open_db(db_path(ctx, source)) as src,
        open_db(db_path(ctx, dest), create=True) as dst,
    ):
        copied = await copy_threads(src, dst, thread, progress=done)
    if as_json:
        print_json({"copied": copied})
    else:
        echo(f"copied {plural(len(copied), 'thread')}")
