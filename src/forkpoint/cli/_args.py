"""What the user types, checked: durations with units, step numbers, and confirmations."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta

import typer

from ._text import err

__all__ = [
    "UsageError",
    "UserError",
    "confirm",
    "parse_duration",
    "parse_step",
    "stdin_is_terminal",
]


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 1."""


class UsageError(UserError):
    """A command line that cannot run as given (a bad option value); one line, exit status 2."""


_SECONDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 604800),
}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*")
_EXAMPLES = "90s, 15m, 12h, 7d, 2w (or 1week, 3 days)"
DURATION_HELP = f"a number and a unit: {_EXAMPLES}"


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``7d``, ``2w``, ``1week``, ``3 days`` as a timedelta.

    The unit is required: a bare number is refused rather than guessed. A
    duration reaching back before the year 1 is refused too (no date is
    that old, and a date cannot be computed from it).
    """
    match = _DURATION.fullmatch(text)
    if match is None or match[2].lower() not in _SECONDS:
        if match is not None and not match[2]:
            raise UserError(f"duration {text.strip()!r} needs a unit, as in {_EXAMPLES}")
        raise UserError(f"duration must be {DURATION_HELP}, not {text!r}")
    try:
        value = timedelta(seconds=float(match[1]) * _SECONDS[match[2].lower()])
        datetime.now(UTC) - value
    except OverflowError:
        raise UserError(
            f"duration {text.strip()!r} is too long: it reaches back before the year 1"
        ) from None
    return value


def parse_step(text: str, name: str = "step") -> int:
    """A step number as typed: a whole number ≥ 0 (as an argument, ``-1`` is no option)."""
    if not re.fullmatch(r"[0-9]+", text.strip()):
        raise UserError(f"{name} must be a whole number ≥ 0, not {text!r}")
    return int(text)


def stdin_is_terminal() -> bool:
    """Whether a person can answer a question (stdin is a terminal)."""
    return sys.stdin is not None and sys.stdin.isatty()


def confirm(question: str, *, yes: bool) -> None:
    """Go on if ``yes`` (``--yes``) or the user answers y; else stop with nothing changed.

    Without a terminal to ask on, ``--yes`` is required: a script never
    deletes by accident because nobody was there to say no.
    """
    if yes:
        return
    if not stdin_is_terminal():
        raise UserError(f"{question.rstrip('?')}: give --yes to confirm (input is not a terminal)")
    if not typer.confirm(question, default=False, err=True):
        err().print("forkpoint: cancelled; nothing was changed", markup=False)
        raise typer.Exit(1)
