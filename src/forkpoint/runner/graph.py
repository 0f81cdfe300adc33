"""A workflow definition, validated once: nodes, routes, interrupts, and per-node policies.

:class:`Graph` is what the ``Runner`` constructor builds from its arguments; every
mistake raises :class:`~forkpoint.InvalidGraph` here, before anything runs. It
also answers the routing questions the engine asks after each node: what the
node's output does to the state, and which nodes follow.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel

from ..errors import InvalidGraph, InvalidInput, InvalidNodeResult, RunnerError, UnknownNodes
from ..models import Checkpoint, S, StateSchema
from .context import takes_context
from .policy import NO_RETRY, RetryPolicy
from .results import END, Next, NodeFn, RouterFn

__all__ = ["Graph", "NodeSpec"]


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name.isspace():
        raise InvalidGraph(f"{what} must be a non-empty str, not {name!r}")
    if name.startswith("__") and name.endswith("__"):
        raise InvalidGraph(f"{what} {name!r}: names like __x__ are reserved for the runner")
    return name


def _timeout(value: object, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidGraph(f"{what} must be a number of seconds or None, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise InvalidGraph(f"{what} must be > 0 seconds, not {value!r}")
    return float(value)


def _policy(value: object, what: str) -> RetryPolicy:
    if not isinstance(value, RetryPolicy):
        raise InvalidGraph(f"{what} must be a RetryPolicy, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class NodeSpec:
    """One node as the engine runs it: the function, whether it takes a context, its policies."""

    fn: NodeFn
    with_context: bool
    retry: RetryPolicy
    timeout: float | None


class Graph:
    """The validated definition a :class:`~forkpoint.Runner` runs (see its docstring)."""

    def __init__(
        self,
        *,
        nodes: Mapping[str, NodeFn],
        entry: str,
        edges: Mapping[str, str | Sequence[str]] | None,
        routers: Mapping[str, RouterFn] | None,
        interrupt_before: Iterable[str],
        interrupt_after: Iterable[str],
        retry: RetryPolicy | None,
        node_retry: Mapping[str, RetryPolicy] | None,
        timeout: float | None,
        node_timeout: Mapping[str, float | None] | None,
        renamed_nodes: Mapping[str, str] | None,
    ) -> None:
        if not isinstance(nodes, Mapping) or not nodes:
            raise InvalidGraph("a workflow needs at least one node")
        names: list[str] = []
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
            names.append(name)
        self.names = tuple(names)
        default_retry = NO_RETRY if retry is None else _policy(retry, "retry")
        default_timeout = _timeout(timeout, "timeout")
        retries = {
            self.known(n, "node_retry"): _policy(p, f"node_retry[{n!r}]")
            for n, p in (node_retry or {}).items()
        }
        timeouts = {
            self.known(n, "node_timeout"): _timeout(t, f"node_timeout[{n!r}]")
            for n, t in (node_timeout or {}).items()
        }
        self.nodes: dict[str, NodeSpec] = {
            name: NodeSpec(
                fn=fn,
                with_context=takes_context(fn),
                retry=retries.get(name, default_retry),
                timeout=timeouts.get(name, default_timeout),
            )
            for name, fn in nodes.items()
        }
        if not isinstance(entry, str) or entry not in self.nodes:
            raise InvalidGraph(f"entry node {entry!r} is not one of the nodes")
        self.entry = entry
        self.edges: dict[str, tuple[str, ...]] = {}
        for name, targets in (edges or {}).items():
            self.known(name, "edge source")
            self.edges[name] = self.targets(targets, f"edge from {name!r}", InvalidGraph)
        self.routers: dict[str, RouterFn] = {}
        for name, router in (routers or {}).items():
            self.known(name, "router source")
            if name in self.edges:
                raise InvalidGraph(f"node {name!r} has both an edge and a router; choose one")
            if not callable(router):
                raise InvalidGraph(f"router of node {name!r} is not callable")
            self.routers[name] = router
        self.before = frozenset(self.known(n, "interrupt_before") for n in interrupt_before)
        self.after = frozenset(self.known(n, "interrupt_after") for n in interrupt_after)
        self.renamed: dict[str, str] = {}
        for old, new in (renamed_nodes or {}).items():
            if not isinstance(old, str) or not old:
                raise InvalidGraph(f"renamed_nodes: an old name must be a non-empty str: {old!r}")
            if old in self.nodes:
                raise InvalidGraph(
                    f"renamed_nodes: {old!r} is still a node of this runner; it cannot be renamed"
                )
            self.renamed[old] = self.known(new, f"renamed_nodes[{old!r}]")

    def known(self, name: object, what: str) -> str:
        """``name`` if it is one of the nodes, else ``InvalidGraph``."""
        if not isinstance(name, str) or name not in self.names:
            raise InvalidGraph(f"{what} names unknown node {name!r}")
        return name

    def targets(self, targets: object, what: str, error: type[RunnerError]) -> tuple[str, ...]:
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
            if not isinstance(item, str) or item not in self.nodes:
                raise error(f"{what} names unknown node {item!r}")
            if item not in out:
                out.append(item)
        return tuple(out)

    def current_name(self, name: str) -> str:
        """A stored node name as this graph spells it (``renamed_nodes`` applied)."""
        return self.renamed.get(name, name)

    def stored_queue(self, checkpoint: Checkpoint[Any]) -> list[tuple[str, int]]:
        """The checkpoint's queue in this graph's names; ``UnknownNodes`` lists any it lacks."""
        queue = [(self.current_name(n), p) for n, p in checkpoint.queue]
        missing = sorted({n for n, _p in queue if n not in self.nodes})
        if missing:
            raise UnknownNodes(
                "the stored queue names nodes this runner does not have: "
                + ", ".join(repr(n) for n in missing)
                + " (if they were renamed, pass renamed_nodes={old: new} to the Runner)",
                nodes=missing,
                thread_id=checkpoint.thread_id,
                step=checkpoint.step,
            )
        return queue

    async def route(self, name: str, out: object, state: S) -> tuple[S, tuple[str, ...]]:
        """Fold node ``name``'s output into ``state``; the new state and the nodes to queue."""
        chosen: tuple[str, ...] | None = None
        if isinstance(out, Next):
            update: object = out.update
            chosen = self.targets(out.nodes, f"node {name!r} returned Next that", InvalidNodeResult)
        else:
            update = out
        if update is not None and not isinstance(update, Mapping | BaseModel):
            raise InvalidNodeResult(
                f"node {name!r} returned {type(update).__name__}; "
                "return a mapping of fields, a partial state model, Next(...) or None"
            )
        try:
            new_state = type(state).apply(
                state, cast("Mapping[str, Any] | BaseModel | None", update)
            )
        except InvalidInput as exc:
            raise InvalidNodeResult(
                f"node {name!r} returned an update that does not apply: {exc.message}"
            ) from exc
        if chosen is not None:
            return new_state, chosen
        if name in self.routers:
            route = self.routers[name](new_state.model_copy(deep=True))
            if inspect.isawaitable(route):
                route = await route
            return new_state, self.targets(
                route, f"router of node {name!r} returned a route that", InvalidNodeResult
            )
        return new_state, self.edges.get(name, ())


def check_state_type(found: object) -> type[StateSchema] | None:
    """A runner's ``state_type``: None or a ``StateSchema`` subclass."""
    if found is not None and not (isinstance(found, type) and issubclass(found, StateSchema)):
        raise InvalidGraph(f"state_type must be a StateSchema subclass, not {found!r}")
    return found
