"""The loop that runs a thread's queue: scheduling, attempts, checkpoints, pauses, limits.

One :class:`Engine` drives one ``run``/``resume`` call. The thread's queue is a
list of ``(node, path_id)`` entries; the nodes in it run in **waves**: the
entries queued when a wave begins run concurrently (at most
``max_concurrency`` at a time, started in queue order), and the successors
they queue wait for the next wave. A join therefore runs after every branch
ahead of it, as in a sequential run, and with ``max_concurrency=1`` the order
is exactly first in, first out.

Every node that finishes is saved at once as its own checkpoint (``step`` =
previous + 1, ``node`` = it, ``queue`` = everything still pending, running
branches included), its update folded into the **latest** state: branch
updates are applied in the order the branches finish. So a crash re-runs
only the branches that had not finished. Saves happen one at a time, from
this loop, which yields to the event loop after each one.

Runner keys in checkpoint metadata (reserved; ``run``/``resume`` refuse them):

* ``wave``: how many entries at the head of the queue belong to the wave in
  progress (written when the queue holds two or more). A stored queue without
  it was written by a sequential runner and is resumed one node at a time.
* ``interrupt``: ``"before"``/``"after"``/``"node"`` on a checkpoint where the
  run paused (also on checkpoints saved while running branches finished after
  the pause was decided); with ``"node"``, ``payload`` and ``waiting``
  (``[node, path_id]``) say who asked what.
* ``answers``: ``[[node, path_id, [answer, ...]], ...]``, the answers given to
  nodes still queued, carried until the node finishes.
* ``attempts`` / ``failures``: on a node's checkpoint when it needed more than
  one attempt: the count, and one line per failed attempt.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal

from pydantic import JsonValue

from ..base import HistoryCheckpointer
from ..errors import InvalidInput, InvalidNodeResult, NodeFailed, NodeTimeout, StepLimitReached
from ..models import INTERRUPT_KEY, Checkpoint, GraphState, S, check_step
from .context import NodeContext, _Interrupted, json_value
from .graph import Graph, NodeSpec
from .results import INTERRUPT_NODE, Interrupt, RunResult

__all__ = ["RESERVED_KEYS", "Engine", "Options", "check_metadata", "read_answers"]

RESERVED_KEYS = frozenset(
    {"wave", INTERRUPT_KEY, "payload", "waiting", "answers", "attempts", "failures"}
)
"""Checkpoint metadata keys the runner writes itself."""

Answers = dict[tuple[str, int], list[JsonValue]]


@dataclass(frozen=True)
class Options:
    """What one call asked for: the metadata of its checkpoints and its limits."""

    metadata: Mapping[str, JsonValue]
    max_steps: int
    max_concurrency: int


@dataclass(eq=False)
class _Entry:
    name: str
    path: int
    task: asyncio.Task[_Outcome] | None = None


@dataclass
class _Outcome:
    kind: Literal["done", "interrupt", "error"]
    output: object = None
    attempts: int = 1
    failures: list[str] = field(default_factory=list)
    payload: JsonValue = None
    error: BaseException | None = None


def read_answers(metadata: Mapping[str, Any], graph: Graph) -> Answers:
    """The ``answers`` a checkpoint carries, keyed by ``(node, path_id)`` (renames applied)."""
    out: Answers = {}
    raw = metadata.get("answers")
    if not isinstance(raw, list):
        return out
    for item in raw:
        if (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and type(item[1]) is int
            and isinstance(item[2], list)
        ):
            out[(graph.current_name(item[0]), item[1])] = list(item[2])
    return out


def _describe(exc: BaseException, attempt: int) -> str:
    text = str(exc)
    return f"attempt {attempt}: {type(exc).__name__}" + (f": {text}" if text else "")


class Engine(Generic[S]):
    """Drives one thread from ``latest`` until its queue is empty, it pauses, or it stops."""

    def __init__(
        self,
        graph: Graph,
        checkpointer: HistoryCheckpointer[S],
        latest: Checkpoint[S],
        options: Options,
        *,
        answers: Answers | None = None,
    ) -> None:
        self._graph = graph
        self._cp = checkpointer
        self._latest = latest
        self._options = options
        self._queue = [_Entry(n, p) for n, p in graph.stored_queue(latest)]
        self._answers: Answers = dict(answers or {})
        wave = latest.metadata.get("wave")
        # No wave recorded on a queue of two or more: written by a sequential runner, whose
        # joins rely on first-in-first-out order. Run it that way (and write no wave) until
        # the queue is down to one entry.
        recorded = type(wave) is int and 1 <= wave <= len(self._queue)
        self._legacy = len(self._queue) >= 2 and not recorded
        self._wave: int = wave if isinstance(wave, int) and recorded else len(self._queue)
        self._concurrency = 1 if self._legacy else options.max_concurrency
        # Resuming is the go-ahead for the node at the head of the queue (a static pause there).
        self._go_ahead: _Entry | None = self._queue[0] if self._queue else None
        self._started = 0
        self._executed: list[str] = []
        self._attempts: list[int] = []
        self._stop: Interrupt | Literal["limit", "error"] | None = None
        self._error: BaseException | None = None
        self._payload: JsonValue = None
        self._waiting: tuple[str, int] | None = None

    # --- scheduling --------------------------------------------------------------------------

    def _running(self) -> list[_Entry]:
        return [e for e in self._queue if e.task is not None]

    def _candidate(self) -> _Entry | None:
        """The entry that would start next: the first not started in the current wave."""
        if self._wave == 0:
            self._wave = len(self._queue)  # the wave is over; everything queued is the next one
        for entry in self._queue[: self._wave]:
            if entry.task is None:
                return entry
        return None

    def _blocked(self, entry: _Entry) -> bool:
        """Whether starting ``entry`` must wait: a step limit or a static pause stops here."""
        if self._started >= self._options.max_steps:
            self._stop = self._stop or "limit"
            return True
        if entry.name in self._graph.before and entry is not self._go_ahead:
            self._stop = self._stop or "before"
            return True
        return False

    def _start_ready(self) -> None:
        while self._stop is None and len(self._running()) < self._concurrency:
            entry = self._candidate()
            if entry is None or self._blocked(entry):
                return
            self._started += 1
            entry.task = asyncio.ensure_future(self._execute(entry, self._latest))

    # --- one node: attempts, retries, timeout ------------------------------------------------

    async def _attempt(self, node: NodeSpec, name: str, state: S, ctx: NodeContext) -> object:
        result = node.fn(state, ctx) if node.with_context else node.fn(state)
        if not inspect.isawaitable(result):
            raise InvalidNodeResult(f"node {name!r} is not async (it returned no awaitable)")
        if node.timeout is None:
            return await result
        limit = asyncio.timeout(node.timeout)
        try:
            async with limit:
                return await result
        except TimeoutError as exc:
            if not limit.expired():
                raise  # the node's own TimeoutError, not ours
            raise NodeTimeout(
                f"node {name!r} ran longer than its timeout of {node.timeout:g} s",
                node=name,
                seconds=node.timeout,
                thread_id=ctx.thread_id,
                step=ctx.step,
            ) from exc

    async def _execute(self, entry: _Entry, start: Checkpoint[S]) -> _Outcome:
        node = self._graph.nodes[entry.name]
        failures: list[str] = []
        attempt = 0
        while True:
            attempt += 1
            ctx = NodeContext(
                thread_id=start.thread_id,
                step=start.step,
                node=entry.name,
                path_id=entry.path,
                attempt=attempt,
                metadata=self._options.metadata,
                _answers=tuple(self._answers.get((entry.name, entry.path), ())),
            )
            try:
                output = await self._attempt(
                    node, entry.name, start.state.data.model_copy(deep=True), ctx
                )
            except _Interrupted as signal:
                return _Outcome("interrupt", payload=signal.payload, attempts=attempt)
            except Exception as exc:  # noqa: BLE001 - any failure of user code is an attempt's outcome
                failures.append(_describe(exc, attempt))
                if isinstance(exc, InvalidNodeResult):
                    return _Outcome("error", error=exc, attempts=attempt, failures=failures)
                if attempt >= node.retry.max_attempts or not node.retry.retries(exc):
                    tried = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                    failed = NodeFailed(
                        f"node {entry.name!r} failed after {tried}: {failures[-1]}",
                        node=entry.name,
                        cause=exc,
                        failures=failures,
                        thread_id=start.thread_id,
                        step=start.step,
                    )
                    failed.__cause__ = exc
                    return _Outcome("error", error=failed, attempts=attempt, failures=failures)
                await asyncio.sleep(node.retry.delay(attempt))
            else:
                return _Outcome("done", output=output, attempts=attempt, failures=failures)

    # --- finishing a node --------------------------------------------------------------------

    def _runner_metadata(self, mark: Interrupt | None) -> dict[str, JsonValue]:
        meta: dict[str, JsonValue] = dict(self._options.metadata)
        if len(self._queue) >= 2 and not self._legacy:
            meta["wave"] = self._wave
        pending = {(e.name, e.path) for e in self._queue}
        answers: list[JsonValue] = [
            [name, path, list(values)]
            for (name, path), values in self._answers.items()
            if (name, path) in pending
        ]
        if answers:
            meta["answers"] = answers
        if mark is not None:
            meta[INTERRUPT_KEY] = mark
            if mark == "node" and self._waiting is not None:
                meta["payload"] = self._payload
                meta["waiting"] = [self._waiting[0], self._waiting[1]]
        return meta

    def _pause_mark(self) -> Interrupt | None:
        return self._stop if self._stop in ("before", "after", "node") else None

    async def _save(self, checkpoint: Checkpoint[S]) -> None:
        # StepConflict: another runner saved this step first; it propagates and we stop.
        await self._cp.save(checkpoint)
        self._latest = checkpoint
        await asyncio.sleep(0)  # let other tasks run between nodes, whatever the backend

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._stop = "error"

    async def _finish(self, entry: _Entry, outcome: _Outcome) -> None:
        entry.task = None
        if outcome.kind == "error":
            assert outcome.error is not None
            self._fail(outcome.error)
            return
        if outcome.kind == "interrupt":
            if self._stop != "error":
                if self._stop != "node":
                    self._payload, self._waiting = outcome.payload, (entry.name, entry.path)
                self._stop = "node"
            return
        try:
            state, successors = await self._graph.route(
                entry.name, outcome.output, self._latest.state.data
            )
        except InvalidNodeResult as exc:
            self._fail(exc)
            return
        index = self._queue.index(entry)
        del self._queue[index]
        self._wave -= 1
        waiting = {e.name for e in self._queue if e.task is None}
        fresh = [s for s in successors if s not in waiting]
        if len(successors) == 1:
            self._queue += [_Entry(s, entry.path) for s in fresh]  # a straight line keeps its path
        else:
            base = max([entry.path, *(e.path for e in self._queue)]) + 1
            self._queue += [_Entry(s, base + i) for i, s in enumerate(fresh)]  # new paths
        self._answers.pop((entry.name, entry.path), None)
        if self._legacy and len(self._queue) < 2:
            self._legacy, self._concurrency = False, self._options.max_concurrency
        if self._stop is None and self._queue:
            if entry.name in self._graph.after:
                self._stop = "after"
            else:
                candidate = self._candidate()
                if candidate is not None and len(self._running()) < self._concurrency:
                    self._blocked(candidate)  # decides a pause (or the limit) before we save
        metadata = self._runner_metadata(self._pause_mark())
        if outcome.attempts > 1 or outcome.failures:
            metadata["attempts"] = outcome.attempts
            metadata["failures"] = list(outcome.failures)
        await self._save(
            Checkpoint(
                thread_id=self._latest.thread_id,
                state=GraphState(data=state),
                step=check_step(self._latest.step + 1),
                node=entry.name,
                queue=[(e.name, e.path) for e in self._queue],
                metadata=metadata,
            )
        )
        self._executed.append(entry.name)
        self._attempts.append(outcome.attempts)

    # --- the loop ----------------------------------------------------------------------------

    async def drive(self) -> RunResult[S]:
        """Run until done, paused, failed or out of steps; see the module docstring."""
        try:
            while True:
                self._start_ready()
                running = self._running()
                if not running:
                    break
                tasks = {e.task for e in running if e.task is not None}
                done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for entry in [e for e in running if e.task in done]:  # ties in queue order
                    assert entry.task is not None
                    await self._finish(entry, entry.task.result())
        finally:
            leftovers = [e.task for e in self._queue if e.task is not None]
            for task in leftovers:
                task.cancel()
            if leftovers:
                await asyncio.gather(*leftovers, return_exceptions=True)
        return await self._outcome()

    async def _outcome(self) -> RunResult[S]:
        if self._error is not None:
            raise self._error
        if self._stop == "node":
            await self._save(
                Checkpoint(
                    thread_id=self._latest.thread_id,
                    state=GraphState(data=self._latest.state.data),
                    step=check_step(self._latest.step + 1),
                    node=INTERRUPT_NODE,
                    queue=[(e.name, e.path) for e in self._queue],
                    metadata=self._runner_metadata("node"),
                )
            )
        if self._stop == "limit":
            raise StepLimitReached(
                f"the run executed {self._options.max_steps} nodes (max_steps) and work is "
                "still pending; resume the thread to continue (with a higher max_steps if needed)",
                limit=self._options.max_steps,
                thread_id=self._latest.thread_id,
                step=self._latest.step,
            )
        return self.result()

    def paused_before(self) -> RunResult[S]:
        """The result of a run whose input checkpoint is already a pause before the entry."""
        self._stop = "before"
        return self.result()

    def result(self) -> RunResult[S]:
        """The call's result, from the latest checkpoint."""
        cp = self._latest
        mark = self._pause_mark() if cp.queue else None
        return RunResult(
            thread_id=cp.thread_id,
            status="interrupted" if mark is not None else "done",
            state=cp.state.data,
            step=cp.step,
            node=cp.node,
            queue=tuple((n, p) for n, p in cp.queue),
            executed=tuple(self._executed),
            interrupt=mark,
            payload=self._payload if mark == "node" else None,
            waiting=self._waiting if mark == "node" else None,
            attempts=tuple(self._attempts),
        )


def check_metadata(metadata: object, what: str, *, reserved: bool) -> dict[str, JsonValue]:
    """A caller's metadata: a JSON object (with ``reserved``, none of the runner's own keys)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInput(f"{what} must be a mapping, not {type(metadata).__name__}")
    checked = json_value(dict(metadata), what)
    assert isinstance(checked, dict)
    taken = sorted(k for k in checked if k in RESERVED_KEYS)
    if taken and reserved:
        raise InvalidInput(
            f"metadata keys {', '.join(map(repr, taken))} are written by the runner; "
            "use other names"
        )
    return checked
