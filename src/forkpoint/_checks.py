"""Every argument check of forkpoint's public API, in one place.

Each ``check_*`` returns the value it accepted (sometimes normalised: a
filter as a plain dict, a huge limit capped at ``MAX_STEP``) or raises
``InvalidInput`` saying what was wrong. The base classes call them, in the
order their docstrings state, before any backend hook runs; backends never
check arguments themselves. Imports only ``errors`` and the standard library,
so ``models`` can use it too.
"""

from __future__ import annotations

import itertools
import math
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InvalidInput

__all__ = [
    "MAX_FILTER_DEPTH",
    "MAX_STEP",
    "MAX_THREAD_ID_LENGTH",
    "check_bounds",
    "check_filter",
    "check_inactive_for",
    "check_keep_last",
    "check_limit",
    "check_older_than",
    "check_page_size",
    "check_prune",
    "check_restore",
    "check_step",
    "check_thread_id",
    "cutoff_before",
]

MAX_STEP = 2**63 - 1
"""Largest step SQLite can store as an INTEGER (steps are 0 ≤ step < 2**63)."""

MAX_THREAD_ID_LENGTH = 512
"""Longest thread id accepted, in characters."""

MAX_FILTER_DEPTH = 8
"""Deepest nesting of mappings a metadata filter may have."""

_EPOCH_MIN = datetime.min.replace(tzinfo=UTC)


def check_thread_id(thread_id: object) -> str:
    """Return ``thread_id`` if it is a valid thread id, else raise ``InvalidInput``.

    The rules: a ``str`` of 1 to ``MAX_THREAD_ID_LENGTH`` characters, not only
    white space, encodable as UTF-8 (no lone surrogates), and without control
    characters (NUL, C0, DEL, C1). Anything else, SQL metacharacters, ``%``,
    ``_``, quotes, emoji included, is stored and matched exactly: ids are never
    normalised, so the NFC and NFD spellings of a name are two threads.
    """
    if not isinstance(thread_id, str):
        raise InvalidInput(f"thread id must be a str, not {type(thread_id).__name__}")
    if not thread_id or thread_id.isspace():
        raise InvalidInput("thread id must not be empty or only white space")
    if len(thread_id) > MAX_THREAD_ID_LENGTH:
        raise InvalidInput(
            f"thread id is {len(thread_id)} characters long; the limit is {MAX_THREAD_ID_LENGTH}"
        )
    if not thread_id.isprintable():
        # isprintable() is also false for spaces other than ' ', which are fine.
        for ch in thread_id:
            if unicodedata.category(ch) in ("Cc", "Cs"):
                raise InvalidInput(
                    f"thread id contains the control or surrogate character U+{ord(ch):04X}"
                )
    return thread_id


def check_step(step: object, name: str = "step") -> int:
    """Return ``step`` if it is an int with 0 ≤ step ≤ ``MAX_STEP``, else raise ``InvalidInput``."""
    if type(step) is not int:  # bool is an int subclass and is no step
        raise InvalidInput(f"{name} must be an int, not {type(step).__name__}")
    if not 0 <= step <= MAX_STEP:
        raise InvalidInput(f"{name} {step} is out of range 0 ≤ {name} < 2**63")
    return step


def check_bounds(
    after: object, before: object, limit: object
) -> tuple[int | None, int | None, int | None]:
    """Validate list_checkpoints' bounds; InvalidInput if any is not acceptable."""
    a = None if after is None else check_step(after, "after")
    b = None if before is None else check_step(before, "before")
    n = None if limit is None else check_limit(limit)
    return a, b, n


def check_restore(info: object, checkpoints: Sequence[object]) -> str:
    """Validate restore_thread's arguments; the thread id."""
    # Imported here: models imports this module for its own field checks.
    from .models import ThreadInfo

    if not isinstance(info, ThreadInfo):
        raise InvalidInput(f"info must be a ThreadInfo, not {type(info).__name__}")
    thread_id = check_thread_id(info.thread_id)
    if not checkpoints:
        raise InvalidInput("a thread needs at least one checkpoint", thread_id=thread_id)
    steps = [getattr(cp, "step", None) for cp in checkpoints]
    if any(getattr(cp, "thread_id", None) != thread_id for cp in checkpoints):
        raise InvalidInput(
            "every checkpoint must belong to the restored thread", thread_id=thread_id
        )
    if any(
        type(a) is not int or type(b) is not int or a >= b for a, b in itertools.pairwise(steps)
    ):
        raise InvalidInput("checkpoint steps must strictly increase", thread_id=thread_id)
    if steps[-1] != info.latest_step:
        raise InvalidInput("the last checkpoint is not at info.latest_step", thread_id=thread_id)
    if (info.parent_thread_id is None) != (info.parent_step is None):
        raise InvalidInput(
            "parent_thread_id and parent_step are set together or not at all", thread_id=thread_id
        )
    if info.parent_thread_id is not None:
        check_thread_id(info.parent_thread_id)
        check_step(info.parent_step, "parent_step")
    return thread_id


def check_limit(limit: object) -> int:
    """A page size: an int ≥ 0 (any size past ``MAX_STEP`` means "all", and is capped there)."""
    if type(limit) is not int or limit < 0:
        raise InvalidInput(f"limit must be an int ≥ 0, not {limit!r}")
    return min(limit, MAX_STEP)


def check_page_size(page_size: object) -> int:
    """A streaming listing's page size: an int ≥ 1 (capped at ``MAX_STEP``)."""
    if type(page_size) is not int or page_size < 1:
        raise InvalidInput(f"page_size must be an int ≥ 1, not {page_size!r}")
    return min(page_size, MAX_STEP)


def check_filter(flt: object, depth: int = 0) -> dict[str, Any]:
    """Validate a metadata filter and return it as a plain dict.

    Keys are any strings (they are bound as SQL parameters, never pasted into
    SQL). Values are JSON scalars (``None``, bool, int, finite float, str),
    matched by type and value (``True`` does not match ``1``), or mappings,
    which match nested keys of an object.
    """
    if not isinstance(flt, Mapping):
        raise InvalidInput(f"filter must be a mapping, not {type(flt).__name__}")
    if depth >= MAX_FILTER_DEPTH:
        raise InvalidInput(f"filter nests deeper than {MAX_FILTER_DEPTH} levels")
    out: dict[str, Any] = {}
    for key, value in flt.items():
        if not isinstance(key, str):
            raise InvalidInput(f"filter key {key!r} is not a str")
        if "\x00" in key or (isinstance(value, str) and "\x00" in value):
            # Stored metadata never holds U+0000 (see codec._plain_json).
            raise InvalidInput(f"filter entry {key!r} holds U+0000 (NUL), which metadata cannot")
        if isinstance(value, Mapping):
            out[key] = check_filter(value, depth + 1)
        elif (
            value is None
            or isinstance(value, bool | str)
            or (isinstance(value, int) and -MAX_STEP - 1 <= value <= MAX_STEP)
            or (isinstance(value, float) and math.isfinite(value))
        ):
            out[key] = value
        else:
            raise InvalidInput(
                f"filter value for {key!r} must be a JSON scalar (an integer within 64 bits) "
                "or a mapping"
            )
    return out


def check_prune(
    thread_id: object, keep_last: object, older_than: object, dry_run: object
) -> tuple[str | None, int | None, timedelta | None]:
    """Validate prune's arguments."""
    tid = None if thread_id is None else check_thread_id(thread_id)
    keep = check_keep_last(keep_last)
    age = None if older_than is None else check_older_than(older_than)
    if keep_last is None and older_than is None:
        raise InvalidInput("prune needs keep_last, older_than, or both")
    if not isinstance(dry_run, bool):
        raise InvalidInput("dry_run must be a bool")
    return tid, keep, age


def check_keep_last(keep_last: object) -> int | None:
    """A retention count (prune's, or a checkpointer's policy): None or an int ≥ 1.

    Past ``MAX_STEP`` "keep the newest N" keeps everything; it is capped there
    so SQLite can bind it.
    """
    if keep_last is None:
        return None
    if type(keep_last) is not int or keep_last < 1:
        raise InvalidInput(f"keep_last must be an int ≥ 1, not {keep_last!r}")
    return min(keep_last, MAX_STEP)


def check_older_than(older_than: object, name: str = "older_than") -> timedelta:
    """A non-negative ``timedelta`` (any size: see :func:`cutoff_before`)."""
    if not isinstance(older_than, timedelta) or older_than < timedelta(0):
        raise InvalidInput(f"{name} must be a non-negative timedelta, not {older_than!r}")
    return older_than


def check_inactive_for(inactive_for: object) -> timedelta:
    """Validate delete_threads' TTL."""
    return check_older_than(inactive_for, "inactive_for")


def cutoff_before(now: datetime, age: timedelta) -> datetime:
    """``now - age``, or the earliest representable time when that is before year 1.

    ``prune(older_than=timedelta(days=10**6))`` or ``timedelta.max`` must mean
    "nothing is that old", not ``OverflowError``: every stored time is at or
    after year 1, so the earliest time keeps every row.
    """
    try:
        return now - age
    except OverflowError:
        return _EPOCH_MIN
