"""``export`` and ``import``: the CLI face of :mod:`forkpoint.transfer`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import InvalidInput, ThreadExists
from ..models import JsonState
from ..transfer import export_threads, import_threads, read_export
from ._app import DbOption, JsonOption, command, db_path, open_db, require_thread, where
from ._args import UserError
from ._reads import all_threads
from ._text import echo, err, plural, print_json, progress

__all__ = ["export", "import_"]


@command()
async def export(
    ctx: typer.Context,
    thread: Annotated[
        str | None, typer.Argument(help="Export only this thread.", show_default=False)
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file (mode 0600) instead of stdout.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write threads and every checkpoint as JSON lines (stdout by default), for `import`."""
    async with open_db(db_path(ctx, db)) as cp:
        if thread is not None:
            total = (await require_thread(cp, thread)).checkpoint_count
        else:
            total = sum(i.checkpoint_count for i in await all_threads(cp))
        chosen = None if thread is None else [thread]
        with progress("exporting", total) as advance:
            report = await export_threads(
                cp, sys.stdout if output is None else output, chosen, progress=advance
            )
    if output is not None:
        err().print(
            f"exported {plural(report.checkpoints, 'checkpoint')} of "
            f"{plural(report.threads, 'thread')} to {output}",
            markup=False,
            soft_wrap=True,
        )


@command("import")
async def import_(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A file written by `forkpoint export`.", show_default=False)
    ],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Recreate exported threads exactly (times, lineage, metadata, every checkpoint)."""
    if not file.is_file():
        raise UserError(f"no export file at {str(file)!r}")
    try:  # the whole file is read and checked before the database is opened (or created)
        with file.open(encoding="utf-8") as f:
            contents = read_export(f, JsonState, name=str(file))
    except InvalidInput as exc:
        raise UserError(exc.message) from exc
    async with open_db(db_path(ctx, db), create=True) as cp:
        try:
            with progress("importing", contents.total) as advance:
                report = await import_threads(cp, contents, progress=advance)
        except ThreadExists as exc:
            raise UserError(f"{exc.message} in {where(cp)}") from exc
    if as_json:
        print_json({"threads": report.threads, "checkpoints": report.checkpoints})
    else:
        echo(
            f"imported {plural(report.threads, 'thread')}, "
            f"{plural(report.checkpoints, 'checkpoint')}"
        )
