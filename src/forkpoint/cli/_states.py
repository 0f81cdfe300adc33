"""State classes named on the command line: ``check --state`` and ``upgrade``.

``--state MODULE:QUALNAME`` imports the application's module (the current
directory first on ``sys.path``, as ``uvicorn app:main`` does) and follows
the dotted name to a :class:`~forkpoint.StateSchema` subclass. Anything else
is a usage error (exit 2) naming the cause.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from ..models import StateSchema
from ..state_check import StateCheckReport, StateUpgradeReport, ThreadStateCheck
from ._app import DbOption, JsonOption, UsageError, YesOption, command, db_path, open_db
from ._args import confirm
from ._text import Grid, echo, plural, print_json, progress

__all__ = ["StateOption", "load_state_class", "problem_lines", "upgrade"]

StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="Your state class as MODULE:QUALNAME (imported from the current directory first).",
        metavar="<module:class>",
        show_default=False,
    ),
]


def load_state_class(spec: str) -> type[StateSchema]:
    """The StateSchema subclass ``spec`` (``MODULE:QUALNAME``) names; UsageError otherwise."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise UsageError(f"--state must look like MODULE:QUALNAME, not {spec!r}")
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        sys.path.insert(0, cwd)
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"--state {spec}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    for part in qualname.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"--state {spec}: {module_name!r} has no {qualname!r}") from None
    if not (isinstance(found, type) and issubclass(found, StateSchema)):
        raise UsageError(f"--state {spec}: {qualname!r} is not a StateSchema subclass")
    return found


@contextmanager
def state_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(threads, checkpoints)`` callback for check_states / upgrade_states."""
    with progress(description, 0) as advance:
        seen = 0

        def report(threads: int, _checkpoints: int) -> None:
            nonlocal seen
            advance(threads - seen)
            seen = threads

        yield report


def problem_lines(threads: tuple[ThreadStateCheck, ...], current: int) -> Grid:
    """``THREAD @ STEP  KIND  stored vN → vM  MESSAGE``, one row per problem."""
    rows = Grid("checkpoint", "problem", "version", "message", show_header=False)
    for thread in threads:
        for p in thread.problems:
            stored = "?" if p.stored_version is None else str(p.stored_version)
            rows.add_row(
                f"{thread.thread_id} @ {p.step}",
                p.kind,
                f"stored v{stored} → v{current}",
                p.message,
            )
    return rows


def check_summary(report: StateCheckReport) -> list[str]:
    versions = ", ".join(
        f"v{v}: {plural(n, 'checkpoint')}" for v, n in sorted(report.stored_versions.items())
    )
    which = "every checkpoint" if report.all_steps else "the latest checkpoint of each thread"
    return [
        f"state {report.state_type} (version {report.current_version}), {which}: "
        f"{plural(report.checkpoints_checked, 'checkpoint')} in "
        f"{plural(report.threads_checked, 'thread')} checked",
        f"stored versions: {versions or '-'}",
        "every state reads" if report.ok else f"{plural(len(report.threads), 'thread')} would fail",
    ]


@command()
async def upgrade(
    ctx: typer.Context,
    state: StateOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Report what would be rewritten; write nothing.", metavar=""
        ),
    ] = False,
    yes: YesOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> int:
    """Rewrite every state stored by an older version of your class as its current version.

    A thread is rewritten (in one transaction) only if all its checkpoints
    read with the class; the others are reported and left as they are.
    Afterwards older code can no longer read the rewritten threads.
    """
    if state is None:
        raise UsageError("upgrade needs --state MODULE:QUALNAME (your state class)")
    state_type = load_state_class(state)
    async with open_db(db_path(ctx, db), write=True, state_type=state_type) as cp:
        if not dry_run and not yes:
            planned = await cp.upgrade_states(dry_run=True)
            if planned.checkpoints_upgraded:
                confirm(
                    f"Rewrite {plural(planned.checkpoints_upgraded, 'checkpoint')} of "
                    f"{plural(planned.threads_upgraded, 'thread')} as version "
                    f"{planned.current_version} of {planned.state_type}?",
                    yes=yes,
                )
        with state_progress("upgrading") as report_progress:
            report = await cp.upgrade_states(dry_run=dry_run, progress=report_progress)
    if as_json:
        print_json({"ok": report.ok, **report.model_dump(mode="json")})
    else:
        _print_upgrade(report)
    return 0 if report.ok else 1


def _print_upgrade(report: StateUpgradeReport) -> None:
    verb = "would rewrite" if report.dry_run else "rewrote"
    echo(
        f"{verb} {plural(report.checkpoints_upgraded, 'checkpoint')} of "
        f"{plural(report.threads_upgraded, 'thread')} as version {report.current_version} of "
        f"{report.state_type} ({plural(report.threads_checked, 'thread')} checked)"
    )
    if report.threads:
        echo(f"left as they are, some checkpoint would not read: {len(report.threads)}")
        problem_lines(report.threads, report.current_version).print()
    if report.threads_changed:
        echo(
            f"written to while being read, left as they are (run again): "
            f"{', '.join(report.threads_changed)}"
        )
