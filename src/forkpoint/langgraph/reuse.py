"""Knowing, without encoding it again, that a value still encodes to a text already stored.

A conversation's state is a list that grows by a message or two per step, and
LangGraph hands the saver the whole list at every checkpoint. Encoding it all
again each time costs the whole state; this module lets the saver pay only for
what changed, without ever trusting a stale text:

* :func:`snapshot` records a value's structure: in walk order, each
  container's type and length, each key, and each immutable leaf itself.
  :func:`unchanged` walks the value again: if every leaf and key is still the
  very same object (``is``) and every container has the same type and length,
  the value encodes exactly as it did (the text depends on nothing else). An
  attribute or item replaced (``message.content = ...``, a key added to a
  nested dict) fails the check, even by an equal value. The snapshot holds the
  leaves, so no other object can take one's id() meanwhile.
* :func:`clone` copies a decoded value's mutable skeleton (containers, models)
  and shares its immutable leaves: the copy is indistinguishable from decoding
  the same text again, at a fraction of pydantic's validation cost. The saver
  keeps the decoded original (the *twin*) to itself and hands out copies; a
  copy has the twin's snapshot, so handing it out costs no walk.

Only values built from JSON's types, tuples, a few immutable standard types
(``_IMMUTABLE``) and models whose registry entry stores nothing but their fields
(``Entry.fields``) qualify; any other value gets no snapshot or copy and is
simply encoded or decoded every time.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from .._pydantic import has_private, rebuild
from .registry import MAX_DEPTH, TypeRegistry

__all__ = ["Snapshot", "clone", "snapshot", "unchanged"]

_IMMUTABLE = frozenset(
    {str, int, float, bool, type(None), bytes, date, timedelta, uuid.UUID, Decimal}
)
"""Exact types whose value cannot change while the object stays the same."""


Snapshot = tuple[Any, ...]
"""A value's structure as :func:`snapshot` records it."""


def snapshot(registry: TypeRegistry, value: Any) -> Snapshot | None:
    """What :func:`unchanged` compares ``value`` against later, or None if it cannot."""
    out: list[Any] = []
    return tuple(out) if _walk(registry, value, out, 0) else None


def unchanged(registry: TypeRegistry, value: Any, recorded: Snapshot) -> bool:
    """Whether ``value`` still encodes as it did when ``recorded`` was taken (never a guess)."""
    out: list[Any] = []
    return (
        _walk(registry, value, out, 0)
        and len(out) == len(recorded)
        and all(map(operator.is_, out, recorded))
    )


def _walk(registry: TypeRegistry, value: Any, out: list[Any], depth: int) -> bool:
    """Append ``value``'s structure to ``out`` in pre-order; False if it has no snapshot.

    A leaf is appended itself, a container as its type, then its length, its
    keys (a dict's or a model's fields') and its children. A type is never a
    leaf, and a type with a length fixes how many entries follow, so equal
    sequences mean equal structures. Lengths are compared by identity too: a
    container longer than CPython's small-int cache just never matches.
    """
    t = type(value)
    if t in _IMMUTABLE:
        out.append(value)
        return True
    if depth >= MAX_DEPTH:
        return False
    out.append(t)
    if t is dict:
        if not all(type(key) is str for key in value):  # other keys are encoded: no snapshot
            return False
        out.append(len(value))
        out.extend(value)
        children: Iterable[Any] = value.values()
    elif t is list or t is tuple:
        out.append(len(value))
        children = value
    else:
        entry = registry.entry_for(t)
        if entry is None or not entry.fields:
            return False
        fields = value.__dict__
        extra = getattr(value, "__pydantic_extra__", None)
        out.append(len(fields))
        out.extend(fields)
        out.append(extra is None)  # then the extra fields' dict, walked after the fields
        children = fields.values() if extra is None else [*fields.values(), extra]
    for child in children:
        kind = type(child)
        if kind in _IMMUTABLE:
            out.append(child)
        elif (kind is dict or kind is list) and not child:
            out.append(kind)
            out.append(0)
        elif not _walk(registry, child, out, depth + 1):
            return False
    return True


class _Unsupported(Exception):
    """A value :func:`clone` does not copy."""


def clone(registry: TypeRegistry, value: Any) -> tuple[bool, Any]:
    """``(True, copy)`` of a decoded value, or ``(False, None)`` if it has parts it cannot copy.

    The copy has new dicts, lists, tuples and models all the way down and the
    same immutable leaves; models keep their fields set and extra fields, and
    must have no private attributes.
    """
    try:
        return True, _copy(registry, value, 0)
    except _Unsupported:
        return False, None


def _copy(registry: TypeRegistry, value: Any, depth: int) -> Any:
    t = type(value)
    if t in _IMMUTABLE:
        return value
    if depth >= MAX_DEPTH:
        raise _Unsupported
    if t is dict:
        out = value.copy()
        for key, item in out.items():
            if type(key) is not str:
                raise _Unsupported
            if type(item) not in _IMMUTABLE:
                out[key] = _copy(registry, item, depth + 1)
        return out
    if t is list:
        return [
            item if type(item) in _IMMUTABLE else _copy(registry, item, depth + 1) for item in value
        ]
    if t is tuple:
        return tuple(
            item if type(item) in _IMMUTABLE else _copy(registry, item, depth + 1) for item in value
        )
    entry = registry.entry_for(t)
    if entry is None or not entry.fields or not isinstance(value, BaseModel) or has_private(value):
        raise _Unsupported
    fields = value.__dict__.copy()
    for key, item in fields.items():
        kind = type(item)
        if kind in _IMMUTABLE:
            continue
        if kind is dict and not item:
            fields[key] = {}
        elif kind is list and not item:
            fields[key] = []
        else:
            fields[key] = _copy(registry, item, depth + 1)
    extra = value.__pydantic_extra__
    return rebuild(value, fields, None if extra is None else _copy(registry, extra, depth + 1))
