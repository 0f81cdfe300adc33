"""``make demo``: a simulated research agent that is killed, resumed, paused, and forked.

The story, against a real SQLite file and with no network or keys:

1. The agent (plan → search → three parallel reads → draft → review → publish)
   runs in a **child process**. Its search API fails once and the node is
   retried (a ``RetryPolicy``); the three reads run concurrently, each saved as
   its own checkpoint when it finishes. The child is killed with ``SIGKILL``
   while ``read_2`` is still reading: no exception, no cleanup, exactly like a
   crash or an OOM kill.
2. This process resumes the thread from its latest checkpoint. The nodes the
   child finished are not run again (a counter file proves it); ``read_2``,
   the one branch that died mid-flight, runs again from the start.
3. The run pauses before ``publish`` (``interrupt_before``). A "human" decision
   is supplied with ``resume(update=...)``: saved as a new checkpoint that keeps
   the pending queue, and the run finishes.
4. Time travel: the thread is forked at step 0 with a different question; the
   fork runs to its own end (this time the human rejects it) while the
   original thread is untouched.
5. ``forkpoint tree`` and ``forkpoint history`` show what is stored.

Run ``python -m forkpoint.demo [--db PATH]`` (default ``./demo.db``, replaced).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from .models import Append, StateSchema
from .runner import Next, NodeContext, RetryPolicy, Runner, RunResult
from .sqlite import SqliteCheckpointer

__all__ = ["ResearchState", "build_runner", "main"]

THREAD = "research-1"
FORK = "research-1-alt"
QUESTION = "Is SQLite a good place to keep agent checkpoints?"
OTHER_QUESTION = "Should agent checkpoints live in Redis instead?"
SLOW_ENV = "FORKPOINT_DEMO_SLOW_NODE"  # the child blocks in this node until it is killed
RUNS_ENV = "FORKPOINT_DEMO_RUNS"  # a file every node execution appends one line to
CHILD_TAG = "[child]"


class ResearchState(StateSchema):
    """What the agent knows: the question, its plan, its sources, notes and the outcome."""

    question: str
    plan: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    notes: Annotated[list[str], Append] = Field(default_factory=list)
    draft: str = ""
    verdict: str = ""
    decision: str = ""
    title: str = ""
    published: str = ""


_quiet = False


def _say(text: str) -> None:
    if not _quiet:
        print(text, flush=True)


def _count(node: str) -> None:
    """Record one execution of ``node`` (the demo's proof that nothing is re-run)."""
    path = os.environ.get(RUNS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(node + "\n")
            f.flush()
            os.fsync(f.fileno())


async def plan(state: ResearchState) -> dict[str, Any]:
    _count("plan")
    topic = state.question.rstrip("?").split(" ", 1)[-1]
    steps = [f"find sources on: {topic}", "read them", "write a short answer"]
    _say(f"  plan     → {len(steps)} steps for {state.question!r}")
    return {"plan": steps}


async def search(state: ResearchState, ctx: NodeContext) -> Next:
    _count("search")
    if ctx.attempt == 1 and os.environ.get(SLOW_ENV):
        _say("  search   ✗ attempt 1: the search API timed out (retried)")
        raise ConnectionError("the search API timed out")
    sources = ["sqlite.org/wal.html", "sqlite.org/atomiccommit.html", "a blog on fsync"]
    if "Redis" in state.question:
        sources = ["redis.io/docs/persistence", "a forum thread", "a benchmark gist"]
    _say(f"  search   → {len(sources)} sources; fan out to read_1, read_2, read_3")
    return Next(["read_1", "read_2", "read_3"], update={"sources": sources})


def _reader(index: int, cp: SqliteCheckpointer[ResearchState]) -> Any:
    name = f"read_{index}"

    async def read(state: ResearchState, ctx: NodeContext) -> dict[str, Any]:
        _count(name)
        source = state.sources[index - 1]
        if os.environ.get(SLOW_ENV) == name:
            await _saved(cp, ctx.thread_id, {f"read_{i}" for i in (1, 2, 3)} - {name})
            _say(f"  {name}   … still reading {source} (slow; the process dies here)")
            await asyncio.sleep(3600)  # the parent kills us long before this returns
        _say(f"  {name}   → note from {source}")
        return {"notes": [f"{source}: relevant"]}

    read.__name__ = name
    return read


async def _saved(cp: SqliteCheckpointer[ResearchState], thread_id: str, nodes: set[str]) -> None:
    """Wait until ``nodes`` are checkpoints of the thread (so the kill lands between branches)."""
    # ASYNC110: the runner saves the other branches; nothing else could signal it, so poll.
    while not nodes <= {m.node for m in await cp.list_checkpoints(thread_id)}:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def draft(state: ResearchState) -> dict[str, Any]:
    _count("draft")
    text = f"Answer to {state.question!r}, from {len(state.notes)} notes."
    _say(f"  draft    → {len(state.notes)} notes in, one draft out")
    return {"draft": text, "title": state.question.rstrip("?")}


async def review(state: ResearchState) -> dict[str, Any]:
    _count("review")
    verdict = "solid" if len(state.notes) == len(state.sources) else "incomplete"
    _say(f"  review   → the draft looks {verdict}")
    return {"verdict": verdict}


async def publish(state: ResearchState) -> dict[str, Any]:
    _count("publish")
    if state.decision == "approve":
        _say(f"  publish  → published {state.title!r}")
        return {"published": state.title}
    _say(f"  publish  → not published (human said {state.decision!r})")
    return {"published": ""}


def build_runner(cp: SqliteCheckpointer[ResearchState]) -> Runner[ResearchState]:
    """The research agent's workflow: search retried, reads in parallel, a human before publish."""
    return Runner(
        cp,
        nodes={
            "plan": plan,
            "search": search,
            "read_1": _reader(1, cp),
            "read_2": _reader(2, cp),
            "read_3": _reader(3, cp),
            "draft": draft,
            "review": review,
            "publish": publish,
        },
        entry="plan",
        edges={
            "plan": "search",
            "read_1": "draft",
            "read_2": "draft",
            "read_3": "draft",
            "draft": "review",
            "review": "publish",
        },
        interrupt_before=["publish"],
        node_retry={"search": RetryPolicy(max_attempts=3, initial_delay=0.2)},
        max_concurrency=3,
    )


# --- the child process --------------------------------------------------------------------------


async def _child(db: str) -> None:
    async with SqliteCheckpointer.open(db, ResearchState) as cp:
        await build_runner(cp).run(THREAD, {"question": QUESTION})


# --- the story ----------------------------------------------------------------------------------


def _queue(result: RunResult[ResearchState] | Any) -> str:
    return ", ".join(f"{n}/{p}" for n, p in result.queue) or "(empty)"


def _kill_child_mid_run(db: str, runs: str) -> int:
    """Start the agent in a child process and SIGKILL it once it is inside read_2."""
    env = {**os.environ, SLOW_ENV: "read_2", RUNS_ENV: runs, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "forkpoint.demo", "--child", "--db", db],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    for line in child.stdout:
        print(f"  {CHILD_TAG}{line.rstrip()}", flush=True)
        if "the process dies here" in line:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.stdout.close()
    code = child.wait()
    if code != -signal.SIGKILL:
        raise SystemExit(f"demo: the child exited with {code} before it could be killed")
    return child.pid


def _executions(runs: str) -> Counter[str]:
    with open(runs, encoding="utf-8") as f:
        return Counter(line.strip() for line in f if line.strip())


def _cli(db: str, *args: str) -> None:
    print(f"$ forkpoint {' '.join(args)}", flush=True)
    subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "forkpoint.cli", "--db", db, *args], check=True
    )


async def _story(db: str, runs: str) -> None:
    print("forkpoint demo: a research agent whose every step is a checkpoint in", db)
    print("\n1. Run the agent in a child process (search retried, reads in parallel); SIGKILL it")
    pid = _kill_child_mid_run(db, runs)
    async with SqliteCheckpointer.open(db, ResearchState) as cp:
        latest = await cp.load(THREAD)
        assert latest is not None
        print(f"  ✗ child {pid} killed with SIGKILL")
        print(
            f"  latest checkpoint: step {latest.step} (node {latest.node}), queue: {_queue(latest)}"
        )

        print("\n2. Resume from that checkpoint in this process (finished nodes are not re-run)")
        runner = build_runner(cp)
        result = await runner.resume(THREAD)
        print(f"  ⏸ paused before {result.next_node} at step {result.step} (interrupt_before)")
        counts = _executions(runs)
        print("  executions: " + ", ".join(f"{n} {c}" for n, c in counts.items()))
        print("  (search's first attempt failed and was retried; read_2 ran twice: its first run")
        print("   died with the child; the reads that had finished did not run again)")

        print("\n3. A human reviews the draft and approves it, with a sharper title")
        decision = {"decision": "approve", "title": "SQLite it is"}
        print(f"  resume(update={decision})")
        result = await runner.resume(THREAD, update=decision)
        edited = await cp.get(THREAD, result.step - 1)
        assert edited is not None
        print(
            f"  the update is step {edited.step} (node {edited.node}) and keeps the queue: "
            f"{_queue(edited)}"
        )
        print(f"  ✓ {THREAD} is {result.status} at step {result.step}: {result.state.published!r}")

        global _quiet
        print(f"\n4. Time travel: fork {THREAD} at step 0 into {FORK}, with another question")
        await runner.fork(THREAD, 0, new_thread_id=FORK)
        print(f"  resume({FORK!r}, update={{'question': {OTHER_QUESTION!r}}})")
        _quiet = True
        alt = await runner.resume(FORK, update={"question": OTHER_QUESTION})
        _quiet = False
        print(f"  ran {' → '.join(alt.executed)}")
        print(f"  ⏸ paused before {alt.next_node} again; this time the human says no")
        alt = await runner.resume(FORK, update={"decision": "reject: sources too thin"})
        original = await cp.load(THREAD)
        assert original is not None
        print(f"  ✓ {FORK} is {alt.status} at step {alt.step}")
        print(
            f"  {THREAD} is untouched: still step {original.step}, "
            f"published {original.state.data.published!r}"
        )

    print("\n5. What the database holds")
    _cli(db, "tree")
    _cli(db, "history", THREAD)
    print(f"\nExplore it yourself: .venv/bin/forkpoint --db {db} show {THREAD} 3")


def main(argv: list[str] | None = None) -> None:
    """Run the demonstration (or, with ``--child``, the agent that gets killed)."""
    parser = argparse.ArgumentParser(prog="python -m forkpoint.demo", description=__doc__)
    parser.add_argument("--db", default="demo.db", help="database file (replaced)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(_child(args.db))
        return
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(args.db + suffix).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="forkpoint-demo-") as tmp:
        runs = str(Path(tmp) / "executions.log")
        Path(runs).touch()
        os.environ[RUNS_ENV] = runs
        try:
            asyncio.run(_story(args.db, runs))
        finally:
            os.environ.pop(RUNS_ENV, None)


if __name__ == "__main__":
    main()
