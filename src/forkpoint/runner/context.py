"""The context a node may take as its second parameter, and ``ctx.interrupt``.

A node written ``async def node(state, ctx)`` receives a :class:`NodeContext`:
where it runs (thread, step, node, path, attempt), the run's metadata, and
:meth:`NodeContext.interrupt` to ask a human a question in the middle of the
node. Whether a node takes the context is read once from its signature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import JsonValue, TypeAdapter, ValidationError

from ..errors import InvalidInput

__all__ = ["NodeContext", "json_value", "takes_context"]

_JSON: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)


def json_value(value: object, what: str) -> JsonValue:
    """``value`` checked to be JSON that metadata can hold; ``InvalidInput`` otherwise."""
    try:
        return _JSON.validate_python(value, strict=True)
    except ValidationError as exc:
        raise InvalidInput(f"{what} must be JSON (dict, list, str, number, bool, None)") from exc


class _Interrupted(BaseException):
    """Raised by :meth:`NodeContext.interrupt` to stop the node until a human answers.

    A ``BaseException`` so that a node's ``except Exception`` cannot swallow it;
    the runner catches it around every node and never retries it.
    """

    def __init__(self, payload: JsonValue) -> None:
        super().__init__("node interrupted")
        self.payload = payload


@dataclass
class NodeContext:
    """Where a node runs, handed to nodes declared ``async def node(state, ctx)``.

    ``thread_id``; ``step``, the step of the checkpoint whose state the node
    received (its own checkpoint gets a later step); ``node`` and ``path_id``;
    ``attempt`` (1 for the first try, 2 for the first retry, …); ``metadata``,
    the checkpoint metadata passed to ``run``/``resume`` (read-only).
    """

    thread_id: str
    step: int
    node: str
    path_id: int
    attempt: int
    metadata: Mapping[str, JsonValue]
    _answers: Sequence[JsonValue] = field(default=(), repr=False)
    _asked: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.metadata = MappingProxyType(dict(self.metadata))

    def interrupt(self, payload: JsonValue = None) -> JsonValue:
        """Ask a human: pause the run here, or return the answer if one was given.

        The first time, this raises a signal that stops the node: the run saves
        a checkpoint (node ``__interrupt__``, state unchanged, this node still
        queued) whose metadata holds ``"interrupt": "node"`` and ``payload``
        (JSON), and ``run``/``resume`` returns ``status="interrupted"``.
        ``resume(thread_id, answer=value)`` runs the node again from its start;
        this time the call returns ``value``. A node may ask several questions:
        the n-th call returns the n-th answer. Code before the call runs again on
        every resume, so keep it safe to repeat.
        """
        checked = json_value(payload, "the interrupt payload")
        index = self._asked
        self._asked += 1
        if index < len(self._answers):
            return self._answers[index]
        raise _Interrupted(checked)


def takes_context(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` accepts a second positional argument (the context).

    ``async def node(state)`` → False; ``async def node(state, ctx)`` (or
    ``*args``) → True. A callable whose signature cannot be read gets only the
    state.
    """
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = 0
    for param in params:
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            return True
        if param.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            positional += 1
    return positional >= 2
