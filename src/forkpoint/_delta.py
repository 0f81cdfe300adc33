"""Reverse deltas: how the SQLite backend stores consecutive states without copying them.

Consecutive checkpoints of a thread are mostly the same state. The newest
checkpoint of every thread is always stored in full; when a newer one
arrives, the previous newest is rewritten as a *reverse delta* against it:
the JSON array ``[p, s, "middle"]`` meaning

    older == newer[:p] + middle + newer[len(newer) - s:]

(``p``, ``s`` in characters). An agent whose state grows by one message per
step stores each old step as the few bytes that remove that message, so a
thread's size grows with what changed, not with steps times state size.

Why reverse and not forward deltas: ``load`` of the latest step, the hot read,
is one full row, exactly as fast as without deltas; ``prune`` removes the
oldest steps, which nothing depends on; ``fork`` copies rows verbatim and
writes only the fork point in full. Reconstruction of an old step is bounded:
a run of consecutive delta rows never exceeds ``MAX_RUN`` (a full row is kept
then), and applying a chain never copies the state per step — the deltas are
composed as slices of the newest text and joined once.

The same text serves PostgreSQL as *forward* deltas (``forkpoint/postgres/_rows.py``
says why): ``make_delta(newer, older)`` rebuilds the newer state from the older,
and ``apply_deltas`` applies any chain, in order, from the full state it starts at.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right

__all__ = ["DELTA_MIN_CHARS", "MAX_RUN", "apply_deltas", "make_delta"]

DELTA_MIN_CHARS = 2048
"""States shorter than this are always stored in full (a delta would not pay)."""

MAX_RUN = 256
"""At most this many consecutive delta rows: bounds the work of reading any step."""

_BLOCK = 4096


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, compared a block at a time (C speed)."""
    n = min(len(a), len(b))
    i = 0
    while i < n:
        j = min(i + _BLOCK, n)
        if a[i:j] != b[i:j]:
            lo, hi = i, j  # a[:lo] == b[:lo], a[:hi] != b[:hi]
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[lo:mid] == b[lo:mid]:
                    lo = mid
                else:
                    hi = mid
            return lo
        i = j
    return n


def _common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix, at most ``limit``."""
    la, lb = len(a), len(b)
    i = 0
    while i < limit:
        j = min(i + _BLOCK, limit)
        if a[la - j : la - i] != b[lb - j : lb - i]:
            lo, hi = i, j  # suffixes of length lo agree, of length hi do not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if a[la - mid : la - lo] == b[lb - mid : lb - lo]:
                    lo = mid
                else:
                    hi = mid
            return lo
        i = j
    return limit


def make_delta(older: str, newer: str) -> str | None:
    """The reverse delta that rebuilds ``older`` from ``newer``, or None if it would not pay.

    A delta pays when it is at most half the size of ``older``.
    """
    p = _common_prefix(older, newer)
    s = _common_suffix(older, newer, min(len(older), len(newer)) - p)
    middle = older[p : len(older) - s]
    if 2 * len(middle) + 32 > len(older):
        return None
    return json.dumps([p, s, middle], ensure_ascii=False, separators=(",", ":"))


_Piece = tuple[str, int, int]  # source text, start, end


def _cut(
    pieces: list[_Piece], ends: list[int], start: int, end: int
) -> tuple[list[_Piece], list[int]]:
    """The pieces covering characters [start, end) of the text the pieces spell, with ends.

    ``ends[k]`` is where piece ``k`` ends in that text. The pieces wanted are
    found by bisection and copied as list slices, so a chain of ``n`` deltas
    costs O(n) Python steps, not O(n²), however many pieces it accumulates.
    """
    if start >= end:
        return [], []
    i = bisect_right(ends, start)  # the first piece ending after start
    j = bisect_left(ends, end)  # the piece holding character end - 1
    out, out_ends = pieces[i : j + 1], ends[i : j + 1]
    src, a, b = out[0]
    first_start = ends[i] - (b - a)
    if start > first_start:
        out[0] = (src, a + start - first_start, b)
    if out_ends[-1] > end:
        src, a, b = out[-1]
        out[-1] = (src, a, b - (out_ends[-1] - end))
        out_ends[-1] = end
    return out, out_ends


def apply_deltas(full: str, deltas: list[str]) -> str:
    """Rebuild an old state: ``deltas`` ordered from the one next to ``full`` downwards.

    Raises ValueError if a delta is malformed or does not fit the text it is
    applied to (a damaged row).
    """
    pieces: list[_Piece] = [(full, 0, len(full))] if full else []
    ends = [len(full)] if full else []
    length = len(full)
    for text in deltas:
        try:
            p, s, middle = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"damaged delta: {exc}") from exc
        if (
            type(p) is not int
            or type(s) is not int
            or not isinstance(middle, str)
            or p < 0
            or s < 0
            or p + s > length
        ):
            raise ValueError("damaged delta: offsets do not fit the newer state")
        head, head_ends = _cut(pieces, ends, 0, p)
        tail, tail_ends = _cut(pieces, ends, length - s, length)
        shift = p + len(middle) - (length - s)
        if middle:
            head.append((middle, 0, len(middle)))
            head_ends.append(p + len(middle))
        pieces = head + tail
        ends = head_ends + [e + shift for e in tail_ends]
        length = p + len(middle) + s
    return "".join(src[a:b] for src, a, b in pieces)
