"""What nodes return and what a run returns: ``Next``, ``RunResult`` and the reserved names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal

from pydantic import BaseModel, JsonValue

from ..models import S

__all__ = [
    "END",
    "INPUT_NODE",
    "INTERRUPT_NODE",
    "UPDATE_NODE",
    "Interrupt",
    "Next",
    "NodeFn",
    "RouterFn",
    "RunResult",
]

END = "__end__"
"""Route target meaning "this path ends here" (a node, router or edge may name it)."""

INPUT_NODE = "__input__"
"""``node`` of step 0, the checkpoint :meth:`Runner.run` saves with the input state."""

UPDATE_NODE = "__update__"
"""``node`` of a checkpoint recording a human's input to :meth:`Runner.resume` (an update,
an answer to ``ctx.interrupt``, or both)."""

INTERRUPT_NODE = "__interrupt__"
"""``node`` of the checkpoint saved when a node called ``ctx.interrupt(payload)``: the
state is unchanged and the asking node is still in the queue."""

NodeFn = Callable[..., Awaitable[Any]]
"""``async def node(state) -> update | Next | None``, or ``async def node(state, ctx)``."""

RouterFn = Callable[[Any], Any]
"""``def router(state) -> str | list[str] | None`` (may be async); ``END``/None ends the path."""

Interrupt = Literal["before", "after", "node"]
"""Why a run paused: ``interrupt_before``, ``interrupt_after``, or ``ctx.interrupt`` in a node."""


@dataclass(frozen=True)
class Next:
    """A node's return value that chooses the next nodes itself, overriding edges and routers.

    ``nodes`` is one node name, several (a fan-out: each gets a new
    ``path_id``), or empty / ``END`` (the path ends). ``update`` is folded into
    the state as a plain update would be.
    """

    nodes: str | Sequence[str]
    update: Mapping[str, Any] | BaseModel | None = None


@dataclass(frozen=True)
class RunResult(Generic[S]):
    """How a :meth:`Runner.run` / :meth:`Runner.resume` call ended.

    ``status`` is ``"done"`` (the queue is empty: the thread is finished) or
    ``"interrupted"`` (paused; ``interrupt`` says why: ``"before"``/``"after"``
    for the static interrupts, ``"node"`` when a node called
    ``ctx.interrupt(payload)``, whose payload is ``payload`` and which is
    ``waiting``). ``step``/``node``/``queue``/``state`` are the latest
    checkpoint's; ``executed`` lists the nodes this call finished, in the order
    their checkpoints were saved, and ``attempts`` how many attempts each took
    (the same order; the failed attempts are listed in that checkpoint's
    metadata).
    """

    thread_id: str
    status: Literal["done", "interrupted"]
    state: S
    step: int
    node: str
    queue: tuple[tuple[str, int], ...]
    executed: tuple[str, ...] = ()
    interrupt: Interrupt | None = None
    payload: JsonValue = None
    waiting: tuple[str, int] | None = None
    attempts: tuple[int, ...] = ()

    @property
    def done(self) -> bool:
        """Whether the thread is finished."""
        return self.status == "done"

    @property
    def next_node(self) -> str | None:
        """The node that runs first when the thread is resumed, if any."""
        if self.waiting is not None:
            return self.waiting[0]
        return self.queue[0][0] if self.queue else None
