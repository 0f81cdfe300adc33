"""Field-by-field differences between two decoded JSON values (what ``forkpoint diff`` prints).

Objects are compared key by key, nested paths spelled ``a.b``; a list that
only grew at its end is reported as ``appended`` with the new items; any other
difference is ``changed``. Values compare as JSON text, so ``1`` differs from
``true`` and ``1.0``, while key order inside objects does not matter.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypedDict

__all__ = ["Change", "diff_values"]


class Change(TypedDict):
    """One difference: the field's dotted path, what happened, and the values on both sides."""

    field: str
    change: Literal["added", "removed", "changed", "appended"]
    before: Any
    after: Any


def diff_values(before: Any, after: Any, path: str = "") -> list[Change]:
    """What changed from ``before`` to ``after`` (decoded JSON), field by field, in key order.

    ``path`` prefixes every field name (the whole value is ``(state)`` when it
    is empty). ``appended`` carries the new items as ``after`` and ``None`` as
    ``before``; ``added``/``removed`` carry ``None`` on the missing side.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[Change] = []
        for key in [*before, *(k for k in after if k not in before)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append(Change(field=sub, change="removed", before=before[key], after=None))
            elif key not in before:
                out.append(Change(field=sub, change="added", before=None, after=after[key]))
            else:
                out += diff_values(before[key], after[key], sub)
        return out
    if _same(before, after):
        return []
    field = path or "(state)"
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and len(after) > len(before)
        and _same(before, after[: len(before)])
    ):
        return [Change(field=field, change="appended", before=None, after=after[len(before) :])]
    return [Change(field=field, change="changed", before=before, after=after)]


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
