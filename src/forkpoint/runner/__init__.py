"""A durable workflow runner: the part of a graph engine that gives checkpoints their meaning.

A workflow is a set of named async *nodes*. A node receives the current state
(and, if it takes a second parameter, a :class:`NodeContext`) and returns an
*update* (folded in with the state's :meth:`StateSchema.apply`) and,
optionally, the nodes to run next (:class:`Next`). Otherwise a *router* (a
function of the updated state) or a static *edge* decides. Pending work is a
queue of ``(node, path_id)`` pairs.

After **every** node the runner saves one checkpoint: ``step`` = previous step
+ 1, ``node`` = the node that just finished, ``queue`` = everything still
pending. Because the checkpoint is the only record of progress, a process that
dies at any instant resumes from its latest checkpoint: the nodes recorded there
never run again, and the nodes that were running when it died run again from
the start (nodes should be safe to repeat, as any retried work must be).

Why these choices:

* **One node per checkpoint, branches in parallel.** Fan-out branches
  (``Next(["a", "b"])``) each get their own ``path_id`` and run concurrently
  (``max_concurrency``), but each finished branch is saved on its own, so
  every checkpoint is one consistent state after one node and a crash loses
  only branches that were still running (see :mod:`.engine` for the waves
  that keep joins after their branches).
* **Joins by de-duplication.** A node already waiting in the queue is not
  queued again; so ``read_1``, ``read_2`` and ``read_3`` all leading to
  ``draft`` run ``draft`` once, after the reads.
* **Optimistic concurrency.** The runner saves step ``n + 1`` after step
  ``n``. If another runner got there first, the checkpointer raises
  :class:`~forkpoint.StepConflict` and this runner stops; the winner's
  history stays whole.
* **Human input keeps the queue.** ``resume(thread, update=..., answer=...)``
  stores the input as a new checkpoint (node ``__update__``) with the *same*
  pending queue, then continues, so an edit never silently ends a run.

Path ids: the entry node runs on path 0; a node with one successor hands it
its own path id; a fan-out gives each new branch a fresh id, one above the
highest id still pending, so the ids of pending entries are always distinct.

Modules: :mod:`.results` (``Next``, ``RunResult``, reserved names),
:mod:`.policy` (``RetryPolicy``), :mod:`.context` (``NodeContext``),
:mod:`.graph` (the validated definition and routing), :mod:`.engine` (the
loop), :mod:`.recovery` (finding and resuming unfinished threads),
:mod:`.api` (``Runner``).
"""

from __future__ import annotations

from ..errors import (
    InvalidGraph,
    InvalidNodeResult,
    NodeFailed,
    NodeTimeout,
    RunnerError,
    StepLimitReached,
    ThreadAlreadyStarted,
    ThreadFinished,
    UnknownNodes,
)
from .api import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_STEPS, Runner
from .context import NodeContext
from .policy import RetryPolicy
from .recovery import RecoveryReport, unfinished_threads
from .results import (
    END,
    INPUT_NODE,
    INTERRUPT_NODE,
    UPDATE_NODE,
    Interrupt,
    Next,
    NodeFn,
    RouterFn,
    RunResult,
)

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_STEPS",
    "END",
    "INPUT_NODE",
    "INTERRUPT_NODE",
    "UPDATE_NODE",
    "Interrupt",
    "InvalidGraph",
    "InvalidNodeResult",
    "Next",
    "NodeContext",
    "NodeFailed",
    "NodeFn",
    "NodeTimeout",
    "RecoveryReport",
    "RetryPolicy",
    "RouterFn",
    "RunResult",
    "Runner",
    "RunnerError",
    "StepLimitReached",
    "ThreadAlreadyStarted",
    "ThreadFinished",
    "UnknownNodes",
    "unfinished_threads",
]
