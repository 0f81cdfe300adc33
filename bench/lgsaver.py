# ruff: noqa: RUF001 - ratios are printed with the multiplication sign

"""LangGraph graphs on forkpoint's ``ForkpointSaver`` against LangGraph's ``AsyncSqliteSaver``.

Three figures, each contender on a fresh file at ``synchronous=FULL``, the two
alternating (order swapped every repetition), ratios taken within a repetition:

* **G1**: a real 5-node graph (a planner, two tool nodes fanned out in parallel,
  a writer and a checker, LangChain messages in an ``add_messages`` channel),
  invoked once on each of 200 fresh threads: time per invocation.
* **G2**: a 500-turn conversation on one thread (each turn adds a ~300-character
  human message and a ~300-character reply: 1,000 messages at the end). The
  database file once its WAL is checkpointed, and the mean time of a turn over
  the last 50 turns, where the state is largest.
* **G3**: ``aget_state_history`` of that conversation (every checkpoint with its
  state), listed to the end.

Each contender's run of a workload is a fresh process, so none inherits the heap
another run left behind. Every graph runs with LangGraph's default ``durability="async"`` (passed
explicitly, so both savers run the same mode): a step's checkpoint is written
while the next step runs, and an invocation returns once every write is done.

The ceilings run in the same repetitions: the 5-node graph with no
checkpointer (the graph's own execution, which no saver can undercut), every
workload on LangGraph's ``InMemorySaver`` (its checkpointing with nothing
written to disk: for G3 that is LangGraph's own snapshot building plus its
in-memory decoding), and the 5-node graph on ``InMemorySaver`` whose puts each
wait for one fsync'd commit on a worker thread (the floor of any saver whose
put is durable when it returns).

``python -m bench.lgsaver [--quick] [--reps N]`` prints this section alone;
``python -m bench.run`` includes it when LangGraph is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import operator
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from .workloads import Samples, db_bytes

__all__ = ["FP_SAVER", "LG_SAVER", "Sizes", "run", "section"]

FP_SAVER, LG_SAVER = "forkpoint-saver", "langgraph-saver"
NO_SAVER, MEM_SAVER = "no-checkpointer", "langgraph-inmemory"
FLOOR_SAVER = "durable-put-floor"
DURABILITY = "async"
"""LangGraph's default graph durability, given explicitly to every invocation of every saver."""


@dataclass(frozen=True)
class Sizes:
    """How many invocations, turns and repetitions."""

    invocations: int
    turns: int
    last_turns: int
    reps: int

    @classmethod
    def full(cls, reps: int) -> Sizes:
        return cls(200, 500, 50, reps)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(10, 20, 5, 1)


# --- the graphs ------------------------------------------------------------------------------

_WORDS = ("plan", "search", "result", "tool", "answer", "check", "draft", "source", "user", "step")


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:size]


class State(TypedDict, total=False):
    """The 5-node graph's state."""

    messages: Annotated[list[AnyMessage], add_messages]
    notes: Annotated[list[str], operator.add]
    draft: str
    approved: bool


class Chat(TypedDict):
    """The conversation's state."""

    messages: Annotated[list[AnyMessage], add_messages]


def _five_nodes() -> Any:
    """plan → (search ∥ lookup) → write → check: five nodes, one parallel step."""

    def plan(state: State) -> dict[str, Any]:
        question = str(state["messages"][-1].content)
        return {"messages": [AIMessage(f"plan: search and look up '{question[:40]}'")]}

    def search(state: State) -> dict[str, Any]:
        return {
            "messages": [ToolMessage("3 results for the question", tool_call_id="search")],
            "notes": ["search: 3 results"],
        }

    def lookup(state: State) -> dict[str, Any]:
        return {"notes": ["lookup: 1 record"]}

    def write(state: State) -> dict[str, Any]:
        return {"draft": "answer built from " + ", ".join(sorted(state.get("notes", [])))}

    def check(state: State) -> dict[str, Any]:
        draft = state.get("draft", "")
        return {"approved": bool(draft), "messages": [AIMessage(draft)]}

    builder = StateGraph(State)
    for name, node in (
        ("plan", plan),
        ("search", search),
        ("lookup", lookup),
        ("write", write),
        ("check", check),
    ):
        builder.add_node(name, node)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "search")
    builder.add_edge("plan", "lookup")
    builder.add_edge(["search", "lookup"], "write")
    builder.add_edge("write", "check")
    builder.add_edge("check", END)
    return builder


def _chat() -> Any:
    """One node answering the last human message with a ~300-character reply."""
    rng = random.Random(7)  # noqa: S311 - benchmark text, not secrets

    def reply(state: Chat) -> dict[str, Any]:
        return {"messages": [AIMessage(_text(rng, 300))]}

    builder = StateGraph(Chat)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder


# --- the contenders --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _saver(name: str, path: Path) -> AsyncIterator[Any]:
    """Either saver on a new file at ``synchronous=FULL`` (LangGraph's is checked, not assumed).

    The ceilings: ``NO_SAVER`` yields None, ``MEM_SAVER`` a new ``InMemorySaver``.
    """
    if name == NO_SAVER:
        yield None
        return
    if name == MEM_SAVER:
        from langgraph.checkpoint.memory import InMemorySaver

        yield InMemorySaver()
        return
    if name == FLOOR_SAVER:
        floor = _durable_put_floor(path)
        try:
            yield floor
        finally:
            floor.conn.close()
        return
    if name == FP_SAVER:
        from forkpoint.langgraph import ForkpointSaver

        async with ForkpointSaver.from_conn_string(path, durability="full") as saver:
            yield saver
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()
        await saver.conn.execute("PRAGMA synchronous = FULL")
        async with saver.conn.execute("PRAGMA synchronous") as cursor:
            row = await cursor.fetchone()
        if row is None or row[0] != 2:
            raise RuntimeError(f"AsyncSqliteSaver is not at synchronous=FULL: {row}")
        yield saver


def _durable_put_floor(path: Path) -> Any:
    """``InMemorySaver`` whose ``aput`` also commits one row at ``synchronous=FULL`` first.

    A put returns once its checkpoint is durable, and LangGraph waits for each
    put before it sends the next, so any saver that keeps SQLite off the event
    loop pays at least this: one fsync'd commit and one worker-thread round trip
    per checkpoint, in sequence. Pending writes cost nothing here: a floor.
    """
    import sqlite3

    from langgraph.checkpoint.memory import InMemorySaver

    class DurablePutFloor(InMemorySaver):
        def __init__(self) -> None:
            super().__init__()
            self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("CREATE TABLE puts (id TEXT)")

        def _commit(self, checkpoint_id: str) -> None:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT INTO puts VALUES (?)", (checkpoint_id,))
            self.conn.execute("COMMIT")

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            await asyncio.to_thread(self._commit, checkpoint["id"])
            return self.put(config, checkpoint, metadata, new_versions)

    return DurablePutFloor()


def _compile(builder: Any, saver: Any) -> Any:
    graph = builder.compile(checkpointer=saver)
    if hasattr(saver, "register_graph"):
        saver.register_graph(graph)
    return graph


def _options(saver: Any) -> dict[str, Any]:
    return {} if saver is None else {"durability": DURABILITY}


async def _graph_run(name: str, path: Path, invocations: int) -> float:
    """Seconds per invocation of the 5-node graph, each on a fresh thread."""
    async with _saver(name, path) as saver:
        graph = _compile(_five_nodes(), saver)
        options = _options(saver)
        await graph.ainvoke(  # warm-up: imports and first statements, not timed
            {"messages": [HumanMessage("warm up")]},
            {"configurable": {"thread_id": "warm"}},
            **options,
        )
        started = time.perf_counter()
        for i in range(invocations):
            config = {"configurable": {"thread_id": f"t{i}"}}
            question = {"messages": [HumanMessage(f"question {i}")]}
            out = await graph.ainvoke(question, config, **options)
            if not out.get("approved"):
                raise RuntimeError(f"{name}: invocation {i} did not finish: {out}")
        return (time.perf_counter() - started) / invocations


async def _conversation(
    name: str, path: Path, sizes: Sizes
) -> tuple[float, int | None, float, int]:
    """(mean seconds per turn over the last turns, file bytes, history seconds, checkpoints)."""
    rng = random.Random(11)  # noqa: S311 - benchmark text, not secrets
    questions = [_text(rng, 300) for _ in range(sizes.turns)]
    config = {"configurable": {"thread_id": "chat"}}
    turn_times: list[float] = []
    async with _saver(name, path) as saver:
        graph = _compile(_chat(), saver)
        options = _options(saver)
        for question in questions:
            started = time.perf_counter()
            await graph.ainvoke({"messages": [HumanMessage(question)]}, config, **options)
            turn_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        history = [snapshot async for snapshot in graph.aget_state_history(config)]
        history_s = time.perf_counter() - started
        final = len(history[0].values["messages"]) if history else 0
    if final != 2 * sizes.turns:
        raise RuntimeError(f"{name}: the conversation holds {final} messages")
    last = statistics.fmean(turn_times[-sizes.last_turns :])
    size = None if name == MEM_SAVER else db_bytes(str(path))
    return last, size, history_s, len(history)


async def run(samples: Samples, workdir: Path, sizes: Sizes) -> None:
    """Every repetition runs both savers on each workload, in alternating order, then the ceilings.

    Each run is a fresh process (:func:`_isolated`), so none inherits the heap
    another left behind.
    """
    for rep in range(sizes.reps):
        order = [FP_SAVER, LG_SAVER] if rep % 2 == 0 else [LG_SAVER, FP_SAVER]
        for name in [*order, NO_SAVER, MEM_SAVER, FLOOR_SAVER]:
            (per_call,) = await _isolated("g1", name, workdir / f"g1-{name}-{rep}.db", sizes)
            samples.add("G1", "s/invocation", name, rep, per_call)
        for name in [*order, MEM_SAVER]:
            turn, size, history_s, count = await _isolated(
                "g2", name, workdir / f"g2-{name}-{rep}.db", sizes
            )
            samples.add("G2", "s/turn", name, rep, turn)
            if size is not None:
                samples.add("G2", "bytes", name, rep, size)
            samples.add("G3", "s", name, rep, history_s)
            samples.add("G3", "checkpoints", name, rep, count)


_ROOT = Path(__file__).resolve().parents[1]


async def _isolated(workload: str, name: str, path: Path, sizes: Sizes) -> list[Any]:
    """One contender's run of one workload in a fresh interpreter: its figures.

    Run in one process after another, the same contender measured 24 ms per
    G2 turn first and 29-30 ms after (the heap and allocator a 1,500-snapshot
    history leaves behind), and the order alternates: a fresh process per run
    keeps that out of the ratios.
    """
    command = [
        sys.executable,
        "-m",
        "bench.lgsaver",
        "--one",
        workload,
        name,
        str(path),
        json.dumps([sizes.invocations, sizes.turns, sizes.last_turns]),
    ]
    done = await asyncio.to_thread(
        subprocess.run,
        command,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{workload} on {name} failed:\n{done.stderr}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _one(workload: str, name: str, path: str, shape: str) -> None:
    """The child of :func:`_isolated`: run it, print the figures as one JSON line."""
    invocations, turns, last_turns = json.loads(shape)
    sizes = Sizes(invocations, turns, last_turns, 1)
    if workload == "g1":
        figures: list[Any] = [asyncio.run(_graph_run(name, Path(path), invocations))]
    else:
        figures = list(asyncio.run(_conversation(name, Path(path), sizes)))
    print(json.dumps(figures))


# --- the report ------------------------------------------------------------------------------

# (workload, metric, what it measures, ratio bound for forkpoint ÷ LangGraph, target text)
_FIGURES = (
    ("G1", "s/invocation", "5-node graph, per invocation", 1 / 1.5, "≥ 1.5× faster"),
    ("G2", "bytes", "{turns}-turn conversation, database file", 1 / 50, "≤ 1/50"),
    ("G2", "s/turn", "{turns}-turn conversation, per turn over the last {last}", 0.7, "≤ 0.7×"),
    ("G3", "s", "`aget_state_history` of that conversation", 1 / 3, "≥ 3× faster"),
)


def _value(metric: str, value: float) -> str:
    if metric == "bytes":
        return f"{value / 1e6:,.2f} MB"
    if value < 1:
        return f"{value * 1e3:,.1f} ms"
    return f"{value:,.2f} s"


def _per_rep(
    samples: Samples, workload: str, metric: str, contender: str = FP_SAVER
) -> list[float]:
    """``contender`` ÷ LangGraph in each repetition, in run order."""
    fp, lg = samples.get(workload, metric, contender), samples.get(workload, metric, LG_SAVER)
    return [fp[r] / lg[r] for r in sorted(fp) if lg.get(r)]


def _ratio(samples: Samples, workload: str, metric: str, contender: str = FP_SAVER) -> float | None:
    per_rep = _per_rep(samples, workload, metric, contender)
    return statistics.median(per_rep) if per_rep else None


# (workload, metric, contender, what it is, what it bounds)
_CEILINGS = (
    (
        "G1",
        "s/invocation",
        NO_SAVER,
        "the 5-node graph with no checkpointer",
        "the graph's own execution: no saver can be faster",
    ),
    (
        "G1",
        "s/invocation",
        MEM_SAVER,
        "the 5-node graph on `InMemorySaver`",
        "LangGraph's checkpointing with nothing written to disk",
    ),
    (
        "G1",
        "s/invocation",
        FLOOR_SAVER,
        "the 5-node graph on `InMemorySaver` + one fsync'd commit per put",
        "any saver whose put is durable when it returns (LangGraph sends the next after it)",
    ),
    (
        "G2",
        "s/turn",
        MEM_SAVER,
        "the conversation on `InMemorySaver`, per turn over the last {last}",
        "the same turns with nothing written to disk",
    ),
    (
        "G3",
        "s",
        MEM_SAVER,
        "`aget_state_history` on `InMemorySaver`",
        "LangGraph's own snapshot building (plus its in-memory decoding)",
    ),
)


def _ceilings(samples: Samples, sizes: Sizes) -> list[str]:
    rows = []
    for workload, metric, contender, text, bounds in _CEILINGS:
        ratio = _ratio(samples, workload, metric, contender)
        if ratio is None:
            continue
        value = statistics.median(samples.get(workload, metric, contender).values())
        rows.append(
            f"| {workload} | {text.format(last=sizes.last_turns)} | {_value(metric, value)} "
            f"| {ratio:.3g}× | {bounds} |"
        )
    if not rows:
        return []
    out = [
        "",
        "Ceilings, measured in the same repetitions (ratio: ÷ `AsyncSqliteSaver`'s figure):",
        "",
        "| workload | ceiling | time | ratio | what it bounds |",
        "|---|---|---|---|---|",
        *rows,
    ]
    bare = _ratio(samples, "G1", "s/invocation", NO_SAVER)
    memory = _ratio(samples, "G1", "s/invocation", MEM_SAVER)
    floor = _ratio(samples, "G1", "s/invocation", FLOOR_SAVER)
    fp = _ratio(samples, "G1", "s/invocation")
    if bare is not None and memory is not None and floor is not None and fp is not None:
        out += [
            "",
            f"G1 in units of `AsyncSqliteSaver`'s time per invocation: ≥ 1.5× faster means at "
            f"most {1 / 1.5:.3f}; the graph alone takes {bare:.3f}, which leaves "
            f"{1 / 1.5 - bare:.3f} for all of a saver's work. `InMemorySaver`, writing nothing, "
            f"spends {memory - bare:.3f} there; with one durable commit per put {floor - bare:.3f}; "
            f"`AsyncSqliteSaver` {1 - bare:.3f}; forkpoint {fp - bare:.3f}."
            + (
                f" The target lies beyond the durable-put floor ({floor:.3f} > {1 / 1.5:.3f}): "
                "no saver whose put is durable when it returns reaches it on this machine."
                if floor > 1 / 1.5
                else ""
            ),
        ]
    return out


def section(samples: Samples, sizes: Sizes) -> list[str]:
    """The report's LangGraph-saver table (empty when the workloads did not run)."""
    if _ratio(samples, "G1", "s/invocation") is None:
        return []
    out = [
        "## LangGraph graphs on ForkpointSaver",
        "",
        f"{sizes.invocations} invocations of the 5-node graph on fresh threads; a "
        f"{sizes.turns}-turn conversation ({2 * sizes.turns:,} messages of ~300 characters; "
        f"per-turn time over the last {sizes.last_turns} turns); both savers at "
        f'`synchronous=FULL`, every graph at LangGraph\'s default `durability="{DURABILITY}"` '
        f"(given explicitly to both), alternating, {sizes.reps} repetition(s). The ratio is "
        "forkpoint ÷ LangGraph within each repetition, then the median.",
        "",
        "| workload | figure | forkpoint | LangGraph | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload, metric, text, bound, target in _FIGURES:
        ratio = _ratio(samples, workload, metric)
        if ratio is None:
            continue
        fp = statistics.median(samples.get(workload, metric, FP_SAVER).values())
        lg = statistics.median(samples.get(workload, metric, LG_SAVER).values())
        better, worse = ("smaller", "larger") if metric == "bytes" else ("faster", "slower")
        shown = f"{ratio:.3g}× " + (
            f"({1 / ratio:.3g}× {better})" if ratio < 1 else f"({ratio:.3g}× {worse})"
        )
        full = sizes == Sizes.full(sizes.reps)
        met = ("yes" if ratio <= bound else "**no**") if full else "n/a (quick run)"
        what = text.format(turns=sizes.turns, last=sizes.last_turns)
        out.append(
            f"| {workload} | {what} | {_value(metric, fp)} | {_value(metric, lg)} | {shown} "
            f"| {target} | {met} |"
        )
    spread = [
        f"{workload} {text.split(',')[-1].strip().format(last=sizes.last_turns)} "
        + ", ".join(f"{r:.3g}×" for r in _per_rep(samples, workload, metric))
        for workload, metric, text, _, _ in _FIGURES
        if _per_rep(samples, workload, metric)
    ]
    out += ["", "Each repetition's ratio, in run order: " + "; ".join(spread) + "."]
    out += _ceilings(samples, sizes)
    count = samples.get("G3", "checkpoints", FP_SAVER)
    if count:
        out += [
            "",
            f"G3 lists {statistics.median(count.values()):,.0f} checkpoints on forkpoint and "
            f"{statistics.median(samples.get('G3', 'checkpoints', LG_SAVER).values()):,.0f} on "
            "LangGraph (three per turn: input, the node's step, its result).",
        ]
    return [*out, ""]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.lgsaver [--quick] [--reps N]``: this section alone, as Markdown."""
    parser = argparse.ArgumentParser(prog="python -m bench.lgsaver", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--turns", type=int, default=None, help="conversation turns (a partial run; default 500)"
    )
    parser.add_argument("--one", nargs=4, help=argparse.SUPPRESS)  # _isolated's child
    args = parser.parse_args(argv)
    if args.one:
        _one(*args.one)
        return 0
    sizes = Sizes.quick() if args.quick else Sizes.full(max(1, args.reps))
    if args.turns is not None:
        sizes = Sizes(sizes.invocations, args.turns, min(sizes.last_turns, args.turns), sizes.reps)
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="forkpoint-bench-lg-") as tmp:
        asyncio.run(run(samples, Path(tmp), sizes))
    print("\n".join(section(samples, sizes)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
