"""How the CLI prints: JSON, tables that never cut an id, plain lines, sizes, plurals, progress.

Tables go to a rich console. On a terminal their columns wrap (fold) long
values, never truncate them; when stdout is a pipe or a file the console is
wide enough that nothing wraps, so every id stays whole on its line.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

__all__ = [
    "Grid",
    "clock",
    "dumps",
    "echo",
    "err",
    "meta_text",
    "one_line",
    "out",
    "plural",
    "print_json",
    "progress",
    "queue_text",
    "short",
    "size",
    "spinner",
    "stamp",
]

PROGRESS_MIN = 500  # rows before a progress bar is worth showing
_PIPE_WIDTH = 100_000  # columns when stdout is not a terminal: tables never wrap there


def out() -> Console:
    """The stdout console for tables: wraps (never truncates) on a terminal, never wraps in a pipe."""
    console = Console(highlight=False)
    if console.is_terminal:
        return console
    return Console(highlight=False, width=_PIPE_WIDTH)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def echo(text: str) -> None:
    """One plain line on stdout, exactly as given (no markup, no wrapping)."""
    sys.stdout.write(text + "\n")


class Grid:
    """Rows to print: a table on a terminal, aligned plain text in a pipe or a file.

    On a terminal a rich table folds a value too wide for its column onto
    more lines; elsewhere each row is one line, columns padded with spaces
    (quick to write for any number of rows, and easy to ``grep`` or ``cut``).
    Either way no value is ever cut short.
    """

    def __init__(self, *headers: str, title: str | None = None, show_header: bool = True) -> None:
        self.headers = headers
        self.title = title
        self.show_header = show_header
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def print(self) -> None:
        if not self.rows and not self.show_header:
            return
        console = Console(highlight=False)
        if console.is_terminal:
            table = Table(title=self.title, show_header=self.show_header)
            for header in self.headers:
                table.add_column(header, overflow="fold")
            for row in self.rows:
                table.add_row(*row)
            console.print(table)
            return
        lines = [*([self.headers] if self.show_header else []), *self.rows]
        if not lines:
            return
        widths = [max(len(line[i]) for line in lines) for i in range(len(self.headers))]
        text = [self.title] if self.title else []
        text += [
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        sys.stdout.write("\n".join(text) + "\n")


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def dumps(value: Any, *, indent: int | None = 2) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def print_json(value: Any) -> None:
    """``--json`` output: indented on a terminal, compact in a pipe or file.

    (Indented JSON goes through the json module's pure-Python encoder, about
    5x slower than the compact C one: for 10,000 threads it was most of the
    time ``threads --json`` spent after reading them.)
    """
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(dumps(value, indent=indent) + "\n")


def stamp(value: datetime) -> str:
    """``2026-01-02 03:04:05`` (UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def clock(value: datetime) -> str:
    """``03:04:05.678`` (UTC)."""
    return value.strftime("%H:%M:%S.%f")[:-3]


def queue_text(queue: list[tuple[str, int]]) -> str:
    return ", ".join(f"{n}/{p}" for n, p in queue) if queue else "-"


def meta_text(metadata: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v if isinstance(v, str) else dumps(v, indent=None)}" for k, v in metadata.items()
    )


def short(value: Any, width: int = 60) -> str:
    """A JSON value on one line, cut to ``width`` with an ellipsis (values only, never ids)."""
    text = dumps(value, indent=None)
    return text if len(text) <= width else text[: width - 1] + "…"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 fork``, ``2 forks``, ``0 forks``."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def size(n: int) -> str:
    """Bytes in decimal units: ``950 B``, ``1.9 kB``, ``3.4 MB``."""
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _progress_console(total: int) -> Console | None:
    """The stderr console to show progress on, or None: ``FORKPOINT_PROGRESS`` = auto|always|never.

    ``auto`` shows it when stderr is a terminal and ``total`` is at least ``PROGRESS_MIN``.
    """
    mode = os.environ.get("FORKPOINT_PROGRESS", "auto")
    console = Console(stderr=True, force_terminal=True if mode == "always" else None)
    show = mode == "always" or (mode == "auto" and console.is_terminal and total >= PROGRESS_MIN)
    return console if show else None


@contextlib.contextmanager
def spinner(description: str) -> Iterator[None]:
    """A spinner on stderr for one long call of unknown length (prune, vacuum); as ``progress``."""
    console = _progress_console(PROGRESS_MIN)
    if console is None:
        yield
        return
    with console.status(description):
        yield


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long jobs; shown as ``FORKPOINT_PROGRESS`` decides."""
    console = _progress_console(total)
    if console is None:
        yield lambda _n: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,  # stdout carries the command's output (JSON lines): never the bar's
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
