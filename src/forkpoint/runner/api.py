"""``Runner``: the public face of the runner (run, resume, fork, recover).

It validates a workflow once (:class:`~forkpoint.runner.graph.Graph`), writes
the checkpoints a call starts with (the input at step 0; a human's update or
answer), and hands the queue to the :class:`~forkpoint.runner.engine.Engine`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Generic, cast

from pydantic import BaseModel, JsonValue, ValidationError

from ..base import HistoryCheckpointer, MetadataFilter
from ..errors import (
    CheckpointNotFound,
    InvalidGraph,
    InvalidInput,
    ThreadAlreadyStarted,
    ThreadFinished,
)
from ..models import (
    INTERRUPT_KEY,
    Checkpoint,
    GraphState,
    S,
    StateSchema,
    check_step,
    check_thread_id,
)
from .context import json_value
from .engine import Engine, Options, check_metadata, read_answers
from .graph import Graph, check_state_type
from .policy import RetryPolicy
from .recovery import RecoveryReport, recover, unfinished_threads
from .results import INPUT_NODE, UPDATE_NODE, NodeFn, RouterFn, RunResult

__all__ = ["DEFAULT_MAX_CONCURRENCY", "DEFAULT_MAX_STEPS", "Runner"]

DEFAULT_MAX_STEPS: Final = 1000
"""Nodes one ``run``/``resume`` call may execute before :class:`StepLimitReached` stops it."""

DEFAULT_MAX_CONCURRENCY: Final = 8
"""Fan-out branches of one thread that may run at the same time."""


class _NoAnswer:
    def __repr__(self) -> str:
        return "<no answer>"


_NO_ANSWER: Final = _NoAnswer()


def _positive_int(value: object, what: str, error: type[InvalidInput]) -> int:
    if type(value) is not int or value < 1:
        raise error(f"{what} must be an int ≥ 1, not {value!r}")
    return value


class Runner(Generic[S]):
    """Runs a workflow of async nodes, saving a checkpoint after every node.

    ``nodes`` maps names to ``async def node(state)`` functions, or
    ``async def node(state, ctx)`` ones that also receive a
    :class:`~forkpoint.NodeContext`; a node returns an update (a mapping of
    fields, or a partial model), a :class:`Next`, or None. ``entry`` is the
    first node. For each node at most one of ``edges[name]`` (a node name, a
    list for a fan-out, or ``END``) and ``routers[name]`` (a function of the
    updated state returning the same) decides what follows when the node does
    not return a ``Next``; with neither, its path ends.
    ``interrupt_before``/``interrupt_after`` name nodes to pause at; when a
    node in ``interrupt_after`` is followed by one in ``interrupt_before``, the
    run pauses once between them (it is the same moment).

    Options: ``max_steps`` (default 1000) caps the nodes one call executes
    (:class:`~forkpoint.StepLimitReached`); ``max_concurrency`` (default 8)
    caps the fan-out branches running at once (1 = one at a time);
    ``retry`` is the default :class:`RetryPolicy` (default: one attempt) and
    ``node_retry`` overrides it per node; ``timeout`` is the default seconds
    one attempt of a node may take (default: none) and ``node_timeout``
    overrides it per node (None = no limit); ``renamed_nodes`` maps node
    names found in stored queues to this runner's names.

    Works with any :class:`~forkpoint.HistoryCheckpointer`. ``state_type`` is
    taken from the checkpointer (every built-in backend has it) unless given;
    it is needed only to turn a mapping passed as input into a state. Every
    mistake in the definition raises :class:`~forkpoint.InvalidGraph` here,
    including a node that is a plain (non-async) function. Nodes and routers
    receive a deep copy of the state: mutating it in place changes nothing;
    only the returned update does.
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
        max_steps: int = DEFAULT_MAX_STEPS,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        retry: RetryPolicy | None = None,
        node_retry: Mapping[str, RetryPolicy] | None = None,
        timeout: float | None = None,
        node_timeout: Mapping[str, float | None] | None = None,
        renamed_nodes: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(checkpointer, HistoryCheckpointer):
            raise InvalidGraph(
                f"checkpointer must be a HistoryCheckpointer, not {type(checkpointer).__name__}"
            )
        self._graph = Graph(
            nodes=nodes,
            entry=entry,
            edges=edges,
            routers=routers,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            retry=retry,
            node_retry=node_retry,
            timeout=timeout,
            node_timeout=node_timeout,
            renamed_nodes=renamed_nodes,
        )
        self._max_steps = _positive_int(max_steps, "max_steps", InvalidGraph)
        self._max_concurrency = _positive_int(max_concurrency, "max_concurrency", InvalidGraph)
        found = state_type if state_type is not None else checkpointer.state_type
        self._state_type = cast("type[S] | None", check_state_type(found))
        self._cp = checkpointer

    @property
    def checkpointer(self) -> HistoryCheckpointer[S]:
        """Where this runner stores its checkpoints."""
        return self._cp

    @property
    def nodes(self) -> tuple[str, ...]:
        """The node names, in definition order."""
        return self._graph.names

    # --- helpers -------------------------------------------------------------------------------

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

    def _options(
        self, metadata: object, thread_metadata: object, max_steps: object
    ) -> tuple[Options, dict[str, JsonValue] | None]:
        """The call's options for the engine, and the thread metadata to write (if any)."""
        limit = self._max_steps if max_steps is None else max_steps
        options = Options(
            metadata=check_metadata(metadata, "metadata", reserved=True),
            max_steps=_positive_int(limit, "max_steps", InvalidInput),
            max_concurrency=self._max_concurrency,
        )
        if thread_metadata is None:
            return options, None
        return options, check_metadata(thread_metadata, "thread_metadata", reserved=False)

    # --- public API ----------------------------------------------------------------------------

    async def run(
        self,
        thread_id: str,
        input: S | Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        thread_metadata: Mapping[str, Any] | None = None,
        max_steps: int | None = None,
    ) -> RunResult[S]:
        """Start a new thread with ``input`` as its state and run it until done or paused.

        Saves step 0 (node ``__input__``, queue ``[(entry, 0)]``), then one
        checkpoint per node. ``metadata`` (a JSON object) is added to every
        checkpoint this call saves, so they can be found with
        ``list_checkpoints(filter=...)``; ``thread_metadata`` becomes the
        thread's metadata (``list_threads(filter=...)``). ``max_steps``
        overrides the runner's limit for this call. A thread id that already
        has checkpoints raises :class:`~forkpoint.ThreadAlreadyStarted` (use
        :meth:`resume`); a run racing another for the same new id gets
        ``StepConflict``. A node that fails (after its retries) raises
        :class:`~forkpoint.NodeFailed`; everything finished before it is saved.
        """
        check_thread_id(thread_id)
        state = self._coerce_input(input)
        options, thread_meta = self._options(metadata, thread_metadata, max_steps)
        if await self._cp.thread_info(thread_id) is not None:
            raise ThreadAlreadyStarted(
                "the thread already exists; continue it with resume()", thread_id=thread_id
            )
        first_meta: dict[str, JsonValue] = dict(options.metadata)
        entry = self._graph.entry
        if entry in self._graph.before:
            first_meta[INTERRUPT_KEY] = "before"
        first: Checkpoint[S] = Checkpoint(
            thread_id=thread_id,
            state=GraphState(data=state),
            step=0,
            node=INPUT_NODE,
            queue=[(entry, 0)],
            metadata=first_meta,
        )
        await self._cp.save(first, thread_metadata=thread_meta)
        engine = Engine(self._graph, self._cp, first, options)
        if INTERRUPT_KEY in first_meta:
            return engine.paused_before()
        return await engine.drive()

    async def resume(
        self,
        thread_id: str,
        update: Mapping[str, Any] | BaseModel | None = None,
        *,
        answer: Any = _NO_ANSWER,
        metadata: Mapping[str, Any] | None = None,
        thread_metadata: Mapping[str, Any] | None = None,
        max_steps: int | None = None,
    ) -> RunResult[S]:
        """Continue a thread from its latest checkpoint's queue until done or paused.

        Nodes recorded in the history are not run again. With ``update`` (a
        human's edit) and/or ``answer`` (the reply to a node's
        ``ctx.interrupt``, any JSON value, None included), a checkpoint (node
        ``__update__``) recording them is saved first, keeping the pending
        queue; the asking node then runs again and its ``ctx.interrupt``
        returns the answer. A static pause at the queue's head is passed:
        resuming *is* the go-ahead. ``metadata``, ``thread_metadata`` and
        ``max_steps`` are as for :meth:`run`. An unknown thread raises
        ``CheckpointNotFound``; a finished one :class:`~forkpoint.ThreadFinished`;
        a queue naming nodes this runner lacks :class:`~forkpoint.UnknownNodes`
        (before any node runs); an ``answer`` when no node asked
        ``InvalidInput``.
        """
        check_thread_id(thread_id)
        options, thread_meta = self._options(metadata, thread_metadata, max_steps)
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
        queue = self._graph.stored_queue(latest)  # UnknownNodes before anything runs
        answers = read_answers(latest.metadata, self._graph)
        if answer is not _NO_ANSWER:
            waiting = self._waiting(latest)
            answers.setdefault(waiting, []).append(json_value(answer, "answer"))
        edited: Checkpoint[S] | None = None
        if update is not None or answer is not _NO_ANSWER:  # built (and checked) before writing
            state = latest.state.data
            if update is not None:
                state = type(state).apply(state, update)
            edited_meta: dict[str, JsonValue] = dict(options.metadata)
            if len(queue) >= 2 and "wave" in latest.metadata:
                edited_meta["wave"] = latest.metadata["wave"]
            carried = [[n, p, list(v)] for (n, p), v in answers.items() if (n, p) in queue]
            if carried:
                edited_meta["answers"] = cast("JsonValue", carried)
            edited = Checkpoint(
                thread_id=thread_id,
                state=GraphState(data=state),
                step=check_step(latest.step + 1),
                node=UPDATE_NODE,
                queue=queue,
                metadata=edited_meta,
            )
        if thread_meta is not None:
            await self._cp.set_thread_metadata(thread_id, thread_meta)
        if edited is not None:
            await self._cp.save(edited)
            latest = edited
        return await Engine(self._graph, self._cp, latest, options, answers=answers).drive()

    def _waiting(self, latest: Checkpoint[S]) -> tuple[str, int]:
        waiting = latest.metadata.get("waiting")
        if (
            latest.metadata.get(INTERRUPT_KEY) != "node"
            or not isinstance(waiting, list)
            or len(waiting) != 2
            or not isinstance(waiting[0], str)
            or type(waiting[1]) is not int
        ):
            raise InvalidInput(
                "answer= was given, but no node of this thread is waiting for one "
                "(its latest checkpoint is not a ctx.interrupt pause)",
                thread_id=latest.thread_id,
                step=latest.step,
            )
        return self._graph.current_name(waiting[0]), waiting[1]

    async def fork(self, thread_id: str, at_step: int, *, new_thread_id: str | None = None) -> str:
        """Copy ``thread_id`` up to ``at_step`` into a new thread (time travel); its id.

        Then :meth:`resume` the new thread, optionally with an update, to run
        from that step again; the original thread is not touched.
        """
        return await self._cp.fork(thread_id, at_step, new_thread_id=new_thread_id)

    async def unfinished_threads(self, *, filter: MetadataFilter | None = None) -> list[str]:
        """Ids of the threads that were mid-run: work pending, not paused for a human.

        ``filter`` matches thread metadata (as ``list_threads``), e.g. to pick
        the threads of one workflow in a shared database.
        """
        return await unfinished_threads(self._cp, filter=filter)

    async def recover(
        self,
        *,
        max_concurrency: int = 4,
        filter: MetadataFilter | None = None,
        max_steps: int | None = None,
    ) -> RecoveryReport[S]:
        """Resume every unfinished thread, at most ``max_concurrency`` at a time.

        What a service runs at start-up, after a crash or a deploy: threads
        whose latest checkpoint still has work queued and is not a pause are
        resumed (paused and finished threads are left alone). One thread's
        failure does not stop the others: the report holds each thread's
        :class:`RunResult` or the error its resume raised.
        """
        concurrency = _positive_int(max_concurrency, "max_concurrency", InvalidInput)
        ids = await self.unfinished_threads(filter=filter)
        return await recover(ids, lambda tid: self.resume(tid, max_steps=max_steps), concurrency)
