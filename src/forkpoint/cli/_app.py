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
from ..errors import CheckpointError
from ..models import Checkpoint, JsonState, StateSchema, ThreadInfo
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
    "require_checkpoint",
    "require_thread",
    "step_argument",
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


app = typer.Typer(
    name="forkpoint",
    cls=_Group,
    help="Inspect and manage forkpoint checkpoint databases (threads, history, forks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Database file (default: $FORKPOINT_DB, else ./forkpoint.db).",
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


def db_path(ctx: typer.Context, db: Path | None) -> Path:
    """``--db`` (after or before the command), else ``$FORKPOINT_DB``, else ``./forkpoint.db``."""
    chosen = db or ctx.obj or os.environ.get("FORKPOINT_DB") or DEFAULT_DB
    return Path(chosen)


P = ParamSpec("P")


def command(
    name: str | None = None, *, takes_steps: bool = False
) -> Callable[[Callable[P, Awaitable[int | None]]], Callable[P, None]]:
    """Register an ``async def`` as a command; its result (if an int) is the exit status."""

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
        app.command(name, cls=_Command, context_settings=settings)(run_command)
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
    path: Path,
    *,
    write: bool = False,
    create: bool = False,
    migrate: bool = False,
    state_type: type[StateSchema] = JsonState,
) -> AsyncIterator[SqliteCheckpointer[Any]]:
    """Open ``path`` with ``state_type`` (JsonState: any stored JSON), read-only unless ``write``.

    A missing file is created only if ``create``.
    """
    exists = _check_path(path, create=create)
    cp: SqliteCheckpointer[Any] = await SqliteCheckpointer.open(
        path,
        state_type,
        read_only=not (write or create or migrate),
        migrate=migrate or not exists,
    )
    try:
        yield cp
    finally:
        await cp.close()


async def require_thread(cp: SqliteCheckpointer[JsonState], thread_id: str) -> ThreadInfo:
    info = await cp.thread_info(thread_id)
    if info is None:
        raise UserError(f"no thread {thread_id!r} in {cp.path}")
    return info


def no_checkpoint(info: ThreadInfo, step: int | None) -> UserError:
    return UserError(
        f"thread {info.thread_id!r} has no checkpoint at step {step} "
        f"(it has {info.checkpoint_count} checkpoints, the latest at step {info.latest_step})"
    )


async def require_checkpoint(
    cp: SqliteCheckpointer[JsonState], thread_id: str, step: int | None
) -> Checkpoint[JsonState]:
    found = await (cp.load(thread_id) if step is None else cp.get(thread_id, step))
    if found is None:  # only now is the thread record worth reading, for the message
        raise no_checkpoint(await require_thread(cp, thread_id), step)
    return found
