"""The ``forkpoint`` Typer app and what every command shares.

``command()`` registers an ``async def`` as a command and runs it: one
event loop per invocation, user mistakes and forkpoint errors as one line on
stderr with exit status 1, and a reader that closed the pipe (``| head``)
ending the command quietly with status 141, as a process stopped by SIGPIPE.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from .. import __version__
from ..base import HistoryCheckpointer
from ..errors import CheckpointError
from ..models import Checkpoint, JsonState, StateSchema, ThreadInfo
from ..opening import POSTGRES_SCHEMES, open_checkpointer
from ..sqlite import SqliteCheckpointer
from ._args import UsageError, UserError
from ._text import err, one_line

__all__ = [
    "EXIT_PIPE",
    "DbOption",
    "JsonOption",
    "UsageError",
    "YesOption",
    "app",
    "command",
    "db_path",
    "no_checkpoint",
    "open_db",
    "open_sqlite",
    "require_checkpoint",
    "require_thread",
    "sqlite_path",
    "step_argument",
    "sub_app",
    "where",
]

DEFAULT_DB = "forkpoint.db"
EXIT_PIPE = 128 + 13  # the status of a process stopped by SIGPIPE
_STEP_ARGS = {"ignore_unknown_options": True}  # so `show t -1` reaches our one-line error


def _flag_help(option: TyperOption | None) -> TyperOption | None:
    """``--help`` listed without a value type: it is a flag and takes none (Typer says ``<bool>``)."""
    if option is not None:
        option.metavar = ""
    return option


class _Command(TyperCommand):
    """Every forkpoint command."""

    def get_help_option(self, ctx: typer.Context) -> TyperOption | None:  # type: ignore[override]
        return _flag_help(super().get_help_option(ctx))


class _Group(TyperGroup):
    """The root command."""

    def get_help_option(self, ctx: typer.Context) -> TyperOption | None:  # type: ignore[override]
        return _flag_help(super().get_help_option(ctx))


def sub_app(name: str, help: str) -> typer.Typer:
    """A group of commands under the root (``forkpoint NAME ...``), with forkpoint's help style."""
    group = typer.Typer(name=name, cls=_Group, help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


app = typer.Typer(
    name="forkpoint",
    cls=_Group,
    help="Inspect and manage forkpoint checkpoint databases (threads, history, forks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database file or postgresql:// URL (default: $FORKPOINT_DB, else ./forkpoint.db).",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of a table.", metavar="")
]
YesOption = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Do not ask for confirmation (required without a terminal).", metavar=""
    ),
]


class BadStep(int):
    """What a step argument holds when the text typed was no whole number ≥ 0.

    Steps are parsed here rather than by Typer so that ``show t x`` and
    ``show t -1`` end in forkpoint's one-line error like every other mistake;
    ``command()`` raises it before the command runs.
    """

    text: str


def _step(text: str) -> int:
    if re.fullmatch(r"[0-9]+", text.strip()):
        return int(text)
    bad = BadStep(-1)
    bad.text = text
    return bad


def step_argument(help: str) -> Any:
    """A step argument: shown as ``<int>`` in the help, parsed by ``_step``."""
    return typer.Argument(help=help, parser=_step, show_default=False)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"forkpoint {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    db: DbOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print forkpoint's version and exit.",
            metavar="",
        ),
    ] = False,
) -> None:
    """Inspect and manage forkpoint checkpoint databases (threads, history, forks)."""
    ctx.obj = db


Target = Path | str  # a database file, or a PostgreSQL URL (kept as typed: no Path folding)


def is_url(target: str) -> bool:
    """Whether ``target`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return "://" in target and target.split("://", 1)[0].lower() in POSTGRES_SCHEMES


def db_path(ctx: typer.Context, db: str | None) -> Target:
    """``--db`` (after or before the command), else ``$FORKPOINT_DB``, else ``./forkpoint.db``.

    A PostgreSQL URL stays text; ``sqlite:///relative.db`` and ``sqlite:////absolute.db`` are
    their file.
    """
    chosen = db or ctx.obj or os.environ.get("FORKPOINT_DB") or DEFAULT_DB
    return chosen if is_url(chosen) else Path(chosen.removeprefix("sqlite:///"))


P = ParamSpec("P")


def command(
    name: str | None = None, *, takes_steps: bool = False, on: typer.Typer | None = None
) -> Callable[[Callable[P, Awaitable[int | None]]], Callable[P, None]]:
    """Register an ``async def`` as a command of ``on`` (default: the root app).

    Its result (if an int) is the exit status.
    """

    def register(fn: Callable[P, Awaitable[int | None]]) -> Callable[P, None]:
        @functools.wraps(fn)
        def run_command(*args: P.args, **kwargs: P.kwargs) -> None:
            async def work() -> int | None:
                for value in kwargs.values():
                    if isinstance(value, BadStep):
                        raise UserError(f"step must be a whole number ≥ 0, not {value.text!r}")
                return await fn(*args, **kwargs)

            _run(work)

        settings = _STEP_ARGS if takes_steps else None
        (on or app).command(name, cls=_Command, context_settings=settings)(run_command)
        return run_command

    return register


def _run(work: Callable[[], Coroutine[Any, Any, int | None]]) -> None:
    try:
        code = asyncio.run(work())
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
    except BrokenPipeError:
        _drop_stdout()
        raise typer.Exit(EXIT_PIPE) from None
    except (UserError, CheckpointError, OSError) as exc:
        message = one_line(exc)
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.strerror or exc}: {exc.filename}"
        err().print(f"forkpoint: error: {message}", markup=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
    if code:
        raise typer.Exit(code)


def _drop_stdout() -> None:
    """Point stdout at /dev/null so nothing buffered is flushed into the closed pipe at exit."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _check_path(path: Path, *, create: bool) -> bool:
    """Whether ``path`` exists; UserError if it must and does not, or is a directory."""
    exists = path.exists()
    if not exists and not create:
        raise UserError(
            f"no forkpoint database at {str(path)!r} (give --db PATH or set FORKPOINT_DB)"
        )
    if exists and path.is_dir():
        raise UserError(f"{str(path)!r} is a directory, not a forkpoint database")
    if exists and not path.is_file():  # a FIFO or device: opening it could block forever
        raise UserError(f"{str(path)!r} is not a regular file, not a forkpoint database")
    return exists


@contextlib.asynccontextmanager
async def open_db(
    target: Target,
    *,
    write: bool = False,
    create: bool = False,
    migrate: bool = False,
    state_type: type[StateSchema] = JsonState,
) -> AsyncIterator[HistoryCheckpointer[Any]]:
    """Open ``target`` with ``state_type`` (JsonState: any stored JSON), read-only unless ``write``.

    A missing SQLite file is created only if ``create``; on PostgreSQL the
    schema is created or upgraded only by ``create`` or ``migrate`` (else a
    missing schema is a ``SchemaVersionError``, and nothing is created).
    """
    read_only = not (write or create or migrate)
    if isinstance(target, str):
        options: dict[str, Any] = {"read_only": read_only, "migrate": migrate or create}
    else:
        options = {
            "read_only": read_only,
            "migrate": migrate or not _check_path(target, create=create),
        }
    async with open_checkpointer(target, state_type, **options) as cp:
        yield cp


def sqlite_path(ctx: typer.Context, db: str | Path | None) -> Path:
    """``db_path`` for a command only SQLite files have: a PostgreSQL URL is a UserError."""
    target = db_path(ctx, None if db is None else str(db))
    if isinstance(target, str):
        raise UserError("this command works on SQLite database files only, not on PostgreSQL")
    return target


@contextlib.asynccontextmanager
async def open_sqlite(
    path: Path, *, write: bool = False, migrate: bool = False
) -> AsyncIterator[SqliteCheckpointer[Any]]:
    """``open_db`` for a command only SQLite files have (``path`` from ``sqlite_path``)."""
    async with open_db(path, write=write, migrate=migrate) as cp:
        if not isinstance(cp, SqliteCheckpointer):  # a plain path always opens SQLite
            raise UserError(f"{path} is not an SQLite database")
        yield cp


def where(cp: HistoryCheckpointer[Any]) -> str:
    """What messages call the database: its file, or its URL without the password."""
    if isinstance(cp, SqliteCheckpointer):
        return cp.path
    from ..postgres import PostgresCheckpointer  # only a URL opened one, so the extra is there

    return cp.url if isinstance(cp, PostgresCheckpointer) else type(cp).__name__


async def require_thread(cp: HistoryCheckpointer[JsonState], thread_id: str) -> ThreadInfo:
    info = await cp.thread_info(thread_id)
    if info is None:
        raise UserError(f"no thread {thread_id!r} in {where(cp)}")
    return info


def no_checkpoint(info: ThreadInfo, step: int | None) -> UserError:
    return UserError(
        f"thread {info.thread_id!r} has no checkpoint at step {step} "
        f"(it has {info.checkpoint_count} checkpoints, the latest at step {info.latest_step})"
    )


async def require_checkpoint(
    cp: HistoryCheckpointer[JsonState], thread_id: str, step: int | None
) -> Checkpoint[JsonState]:
    found = await (cp.load(thread_id) if step is None else cp.get(thread_id, step))
    if found is None:  # only now is the thread record worth reading, for the message
        raise no_checkpoint(await require_thread(cp, thread_id), step)
    return found
