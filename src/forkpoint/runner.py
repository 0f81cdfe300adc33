"""A durable workflow runner: the part of a graph engine that gives checkpoints their meaning.

A workflow is a set of named async *nodes*. A node receives the current state
and returns an *update* (folded in with the state's :meth:`StateSchema.apply`)
and, optionally, the nodes to run next (:class:`Next`). Otherwise a *router*
(a function of the updated state) or a static *edge* decides. Pending work is
the seed's queue: ``(node, path_id)`` pairs, run first in, first out.

After **every** node the runner saves one checkpoint: ``step`` = previous step
+ 1, ``node`` = the node that just finished, ``queue`` = everything still
pending. Because the checkpoint is the only record of progress, a process that
dies at any instant resumes from its latest checkpoint: the nodes recorded there
never run again, and the node that was running when it died runs again from
the start (nodes should be safe to repeat, as any retried work must be).

Why these choices:

* **One node per checkpoint.** Fan-out branches (``Next(["a", "b"])``) each get
  their own ``path_id`` and run one after the other in queue order, so every
  checkpoint is one consistent state after one node. Nothing is ever half
  applied, and a fork at any step has a well-defined queue.
* **Joins by de-duplication.** A node already pending is not queued again; so
  ``read_1``, ``read_2`` and ``read_3`` all leading to ``draft`` run ``draft``
  once, after the last read (it enters the queue behind the reads still pending).
* **Optimistic concurrency.** The runner saves step ``n + 1`` after loading
  step ``n``. If another runner got there first, the checkpointer raises
  :class:`~forkpoint.StepConflict` and this runner stops, having written
  nothing; the winner's history stays whole.
* **Human edits keep the queue.** ``resume(thread, update=...)`` stores the
  edited state as a new checkpoint (node ``__update__``) with the *same*
  pending queue, then continues. (wesichain's ``update_state`` drops the queue,
  which silently ends the run; forkpoint does not copy that.)

Path ids: the entry node runs on path 0; a node with one successor hands it
its own path id; a fan-out gives each new branch a fresh id, one above the
highest id still pending, so the ids of pending entries are always distinct.

Checkpoint metadata written by the runner: only ``{"interrupt": "before"}`` or
``{"interrupt": "after"}`` on the checkpoint where a run paused, so tools
(``forkpoint tree``) can tell a paused thread from a crashed one.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, cast

from pydantic import BaseModel, ValidationError

from .base import HistoryCheckpointer
from .errors import CheckpointError, CheckpointNotFound, InvalidInput
from .models import Checkpoint, GraphState, S, StateSchema, check_step, check_thread_id

__all__ = [
    "END",
    "INPUT_NODE",
    "UPDATE_NODE",
    "InvalidGraph",
    "InvalidNodeResult",
    "Next",
    "NodeFn",
    "RouterFn",
    "RunResult",
    "Runner",
    "RunnerError",
    "ThreadAlreadyStarted",
    "ThreadFinished",
]

END = "__end__"
"""Route target meaning "this path ends here" (a node, router or edge may name it)."""

INPUT_NODE = "__input__"
"""``node`` of step 0, the checkpoint :meth:`Runner.run` saves with the input state."""

UPDATE_NODE = "__update__"
"""``node`` of a checkpoint that records a human update made by :meth:`Runner.resume`."""

NodeFn = Callable[[Any], Awaitable[Any]]
"""``async def node(state) -> update | Next | None``."""

RouterFn = Callable[[Any], Any]
"""``def router(state) -> str | list[str] | None`` (may be async); ``END``/None ends the path."""

Interrupt = Literal["before", "after"]


class RunnerError(CheckpointError):
    """Base of the runner's own errors (a :class:`~forkpoint.CheckpointError`)."""


class InvalidGraph(RunnerError, InvalidInput):
    """The workflow definition is wrong: unknown node names, no entry node, bad callables.

    Raised by the :class:`Runner` constructor, or at run time when a stored
    queue names a node this runner does not have; nothing is written.
    """


class InvalidNodeResult(RunnerError, InvalidInput):
    """A node or router returned something unusable (wrong type, unknown next node,
    an update that does not apply to the state). Nothing is saved for that node,
    so fixing the code and resuming runs it again."""


class ThreadAlreadyStarted(RunnerError):
    """:meth:`Runner.run` was given a thread id that already has checkpoints; use resume."""


class ThreadFinished(RunnerError):
    """:meth:`Runner.resume` on a thread whose latest checkpoint has an empty queue."""


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
    ``"interrupted"`` (paused by ``interrupt_before``/``interrupt_after``;
    ``interrupt`` says which, ``queue[0]`` is the node that runs next).
    ``step``/``node``/``queue``/``state`` are the latest checkpoint's;
    ``executed`` lists the nodes this call ran, in order.
    """

    thread_id: str
    status: Literal["done", "interrupted"]
    state: S
    step: int
    node: str
    queue: tuple[tuple[str, int], ...]
    executed: tuple[str, ...] = ()
    interrupt: Interrupt | None = None

    @property
    def done(self) -> bool:
        """Whether the thread is finished."""
        return self.status == "done"

    @property
    def next_node(self) -> str | None:
        """The node that runs first when the thread is resumed, if any."""
        return self.queue[0][0] if self.queue else None


@dataclass
class _Progress(Generic[S]):
    checkpoint: Checkpoint[S]
    executed: list[str] = field(default_factory=list)


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name.isspace():
        raise InvalidGraph(f"{what} must be a non-empty str, not {name!r}")
    if name.startswith("__") and name.endswith("__"):
        raise InvalidGraph(f"{what} {name!r}: names like __x__ are reserved for the runner")
    return name


class Runner(Generic[S]):
    """Runs a workflow of async nodes, saving a checkpoint after every node.

    ``nodes`` maps names to ``async def node(state)`` functions that return an
    update (a mapping of fields, or a partial model), a :class:`Next`, or None.
    ``entry`` is the first node. For each node at most one of ``edges[name]``
    (a node name, a list for a fan-out, or ``END``) and ``routers[name]`` (a
    function of the updated state returning the same) decides what follows
    when the node does not return a ``Next``; with neither, its path ends.
    ``interrupt_before``/``interrupt_after`` name nodes to pause at; when a
    node in ``interrupt_after`` is followed by one in ``interrupt_before``,
    the run pauses once between them (it is the same moment).

    Works with any :class:`~forkpoint.HistoryCheckpointer`. ``state_type`` is
    taken from the checkpointer (both built-in backends expose it) unless
    given; it is needed only to turn a mapping passed as input into a state.
    Every mistake in the definition raises :class:`InvalidGraph` here, including
    a node that is a plain (non-async) function. Nodes and routers receive a
    deep copy of the state: mutating it in place changes nothing; only the
    returned update does.
    """

    def __init__(
        self,
        checkpointer: HistoryCheckpointer[S],
        *,
        nodes: Mapping[str, NodeFn],
        entry: str,
        edges: Mapping[str, str | Sequence[str]] | None = None,
        routers: Mapping[str, RouterFn] | None = None,
        interrupt_before: Iterable[str] = (),
        interrupt_after: Iterable[str] = (),
        state_type: type[S] | None = None,
    ) -> None:
        if not isinstance(checkpointer, HistoryCheckpointer):
            raise InvalidGraph(
                f"checkpointer must be a HistoryCheckpointer, not {type(checkpointer).__name__}"
            )
        if not isinstance(nodes, Mapping) or not nodes:
            raise InvalidGraph("a workflow needs at least one node")
        self._nodes: dict[str, NodeFn] = {}
        for name, fn in nodes.items():
            _check_name(name, "node name")
            if not callable(fn):
                raise InvalidGraph(f"node {name!r} is not callable")
            plain = inspect.isfunction(fn) or inspect.ismethod(fn)
            if plain and not inspect.iscoroutinefunction(fn):
                # A plain ``def`` would run (side effects and all, again on every resume)
                # before the run-time awaitable check could refuse it. Other callables
                # (objects whose ``__call__`` may be async) are checked when called.
                raise InvalidGraph(f"node {name!r} is not async; define it with async def")
            self._nodes[name] = fn
        if not isinstance(entry, str) or entry not in self._nodes:
            raise InvalidGraph(f"entry node {entry!r} is not one of the nodes")
        self._entry = entry
        self._edges: dict[str, tuple[str, ...]] = {}
        for name, targets in (edges or {}).items():
            self._known(name, "edge source")
            self._edges[name] = self._targets(targets, f"edge from {name!r}", InvalidGraph)
        self._routers: dict[str, RouterFn] = {}
        for name, router in (routers or {}).items():
            self._known(name, "router source")
            if name in self._edges:
                raise InvalidGraph(f"node {name!r} has both an edge and a router; choose one")
            if not callable(router):
                raise InvalidGraph(f"router of node {name!r} is not callable")
            self._routers[name] = router
        self._before = frozenset(self._known(n, "interrupt_before") for n in interrupt_before)
        self._after = frozenset(self._known(n, "interrupt_after") for n in interrupt_after)
        found = state_type if state_type is not None else getattr(checkpointer, "state_type", None)
        if found is not None and not (isinstance(found, type) and issubclass(found, StateSchema)):
            raise InvalidGraph(f"state_type must be a StateSchema subclass, not {found!r}")
        self._state_type = cast("type[S] | None", found)
        self._cp = checkpointer

    @property
    def checkpointer(self) -> HistoryCheckpointer[S]:
        """Where this runner stores its checkpoints."""
        return self._cp

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in definition order."""
        return tuple(self._nodes)

    # --- validation helpers ------------------------------------------------------------------

    def _known(self, name: object, what: str) -> str:
        if not isinstance(name, str) or name not in self._nodes:
            raise InvalidGraph(f"{what} names unknown node {name!r}")
        return name

    def _targets(self, targets: object, what: str, error: type[RunnerError]) -> tuple[str, ...]:
        """Normalise a route (name, list of names, END, None) to known node names."""
        if targets is None:
            return ()
        if isinstance(targets, str):
            items: list[object] = [targets]
        elif isinstance(targets, Sequence):
            items = list(targets)
        else:
            raise error(f"{what} must be a node name or a list of names, not {targets!r}")
        out: list[str] = []
        for item in items:
            if item == END:
                continue
            if not isinstance(item, str) or item not in self._nodes:
                raise error(f"{what} names unknown node {item!r}")
            if item not in out:
                out.append(item)
        return tuple(out)

    def _check_queue(self, checkpoint: Checkpoint[S]) -> None:
        for name, _path in checkpoint.queue:
            if name not in self._nodes:
                raise InvalidGraph(
                    f"the queue names node {name!r}, which this runner does not have",
                    thread_id=checkpoint.thread_id,
                    step=checkpoint.step,
                )

    def _coerce_input(self, value: object) -> S:
        if isinstance(value, StateSchema):
            if self._state_type is not None and not isinstance(value, self._state_type):
                raise InvalidInput(
                    f"input must be a {self._state_type.__name__}, not {type(value).__name__}"
                )
            return value  # type: ignore[return-value]
        if isinstance(value, Mapping):
            if self._state_type is None:
                raise InvalidInput("pass the input as a state instance (no state_type is known)")
            try:
                return self._state_type.model_validate(dict(value))
            except ValidationError as exc:
                raise InvalidInput(
                    f"input does not validate as {self._state_type.__name__}: {exc}"
                ) from exc
        raise InvalidInput(f"input must be a state or a mapping, not {type(value).__name__}")

    # --- public API --------------------------------------------------------------------------

    async def run(self, thread_id: str, input: S | Mapping[str, Any]) -> RunResult[S]:
        """Start a new thread with ``input`` as its state and run it until done or interrupted.

        Saves step 0 (node ``__input__``, queue ``[(entry, 0)]``), then one
        checkpoint per node. A thread id that already has checkpoints raises
        :class:`ThreadAlreadyStarted` (use :meth:`resume`); a run racing
        another for the same new id gets ``StepConflict``. A node's own
        exception propagates unchanged; everything finished before it is saved.
        """
        check_thread_id(thread_id)
        state = self._coerce_input(input)
        if await self._cp.thread_info(thread_id) is not None:
            raise ThreadAlreadyStarted(
                "the thread already exists; continue it with resume()", thread_id=thread_id
            )
        queue = [(self._entry, 0)]
        metadata: dict[str, Any] = {}
        if self._entry in self._before:
            metadata["interrupt"] = "before"
        first: Checkpoint[S] = Checkpoint(
            thread_id=thread_id,
            state=GraphState(data=state),
            step=0,
            node=INPUT_NODE,
            queue=queue,
            metadata=metadata,
        )
        await self._cp.save(first)
        progress = _Progress(first)
        if "interrupt" in metadata:
            return self._result(progress, "before")
        return await self._drive(progress)

    async def resume(
        self, thread_id: str, update: Mapping[str, Any] | BaseModel | None = None
    ) -> RunResult[S]:
        """Continue a thread from its latest checkpoint's queue until done or interrupted.

        Nodes recorded in the history are not run again. With ``update`` (a
        human's edit), the edited state is first saved as a new checkpoint
        (node ``__update__``) that keeps the pending queue. A pause at the
        queue's head (``interrupt_before``) is passed: resuming *is* the
        go-ahead. An unknown thread raises ``CheckpointNotFound``; a finished
        one :class:`ThreadFinished` (nothing is re-run or restarted).
        """
        check_thread_id(thread_id)
        latest = await self._cp.load(thread_id)
        if latest is None:
            raise CheckpointNotFound("no such thread; start it with run()", thread_id=thread_id)
        if not latest.queue:
            raise ThreadFinished(
                "the thread is finished (its latest checkpoint has an empty queue); "
                "fork an earlier step to run it differently",
                thread_id=thread_id,
                step=latest.step,
            )
        self._check_queue(latest)
        if update is not None:
            state = type(latest.state.data).apply(latest.state.data, update)
            edited: Checkpoint[S] = Checkpoint(
                thread_id=thread_id,
                state=GraphState(data=state),
                step=check_step(latest.step + 1),
                node=UPDATE_NODE,
                queue=list(latest.queue),
                metadata={},
            )
            await self._cp.save(edited)
            latest = edited
        return await self._drive(_Progress(latest))

    async def fork(self, thread_id: str, at_step: int, *, new_thread_id: str | None = None) -> str:
        """Copy ``thread_id`` up to ``at_step`` into a new thread (time travel); its id.

        Then :meth:`resume` the new thread, optionally with an update, to run
        from that step again; the original thread is not touched.
        """
        return await self._cp.fork(thread_id, at_step, new_thread_id=new_thread_id)

    # --- the loop ----------------------------------------------------------------------------

    def _result(self, progress: _Progress[S], interrupt: Interrupt | None) -> RunResult[S]:
        cp = progress.checkpoint
        return RunResult(
            thread_id=cp.thread_id,
            status="interrupted" if interrupt is not None else "done",
            state=cp.state.data,
            step=cp.step,
            node=cp.node,
            queue=tuple((n, p) for n, p in cp.queue),
            executed=tuple(progress.executed),
            interrupt=interrupt,
        )

    async def _route(self, name: str, out: object, state: S) -> tuple[S, tuple[str, ...]]:
        """Apply a node's output to ``state``; the new state and the nodes to queue."""
        chosen: tuple[str, ...] | None = None
        if isinstance(out, Next):
            update: object = out.update
            chosen = self._targets(
                out.nodes, f"node {name!r} returned Next that", InvalidNodeResult
            )
        else:
            update = out
        if update is not None and not isinstance(update, Mapping | BaseModel):
            raise InvalidNodeResult(
                f"node {name!r} returned {type(update).__name__}; "
                "return a mapping of fields, a partial state model, Next(...) or None"
            )
        try:
            new_state = type(state).apply(state, update)
        except InvalidInput as exc:
            raise InvalidNodeResult(
                f"node {name!r} returned an update that does not apply: {exc.message}"
            ) from exc
        if chosen is not None:
            return new_state, chosen
        if name in self._routers:
            route = self._routers[name](new_state.model_copy(deep=True))
            if inspect.isawaitable(route):
                route = await route
            return new_state, self._targets(
                route, f"router of node {name!r} returned a route that", InvalidNodeResult
            )
        return new_state, self._edges.get(name, ())

    async def _drive(self, progress: _Progress[S]) -> RunResult[S]:
        while progress.checkpoint.queue:
            current = progress.checkpoint
            (name, path_id), *rest = current.queue
            state = current.state.data
            out = self._nodes[name](state.model_copy(deep=True))
            if not inspect.isawaitable(out):
                raise InvalidNodeResult(f"node {name!r} is not async (it returned no awaitable)")
            new_state, successors = await self._route(name, await out, state)
            queue = list(rest)
            pending = {n for n, _p in queue}
            fresh = [s for s in successors if s not in pending]
            if len(successors) == 1:
                queue += [(succ, path_id) for succ in fresh]  # a straight line keeps its path
            else:
                base = max([path_id, *(p for _n, p in queue)]) + 1
                queue += [(succ, base + i) for i, succ in enumerate(fresh)]  # new paths
            interrupt: Interrupt | None = None
            if queue and name in self._after:
                interrupt = "after"
            elif queue and queue[0][0] in self._before:
                interrupt = "before"
            metadata: dict[str, Any] = {} if interrupt is None else {"interrupt": interrupt}
            saved: Checkpoint[S] = Checkpoint(
                thread_id=current.thread_id,
                state=GraphState(data=new_state),
                step=check_step(current.step + 1),
                node=name,
                queue=queue,
                metadata=metadata,
            )
            await self._cp.save(saved)  # StepConflict: another runner won this step; stop.
            progress.checkpoint = saved
            progress.executed.append(name)
            if interrupt is not None:
                return self._result(progress, interrupt)
        return self._result(progress, None)
