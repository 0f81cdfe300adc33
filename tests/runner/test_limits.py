"""Step limits, yielding to the event loop, timeouts and retries, on every backend."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import pytest

from forkpoint import (
    DEFAULT_MAX_STEPS,
    HistoryCheckpointer,
    InvalidGraph,
    InvalidInput,
    NodeFailed,
    NodeTimeout,
    RetryPolicy,
    Runner,
    StepLimitReached,
)
from tests.conftest import Factory
from tests.runner.graphs import Doc, logging_node


@pytest.fixture
async def cp(make_checkpointer: Factory) -> HistoryCheckpointer[Doc]:
    return await make_checkpointer(Doc)


def _cycle(cp: HistoryCheckpointer[Doc], **kw: Any) -> Runner[Doc]:
    """a → a forever (until n reaches `until`, if the state says so)."""

    async def a(state: Doc) -> dict[str, Any]:
        return {"n": state.n + 1}

    async def again(state: Doc) -> str | None:
        return "a" if not state.topic or state.n < int(state.topic) else None

    return Runner(cp, nodes={"a": a}, entry="a", routers={"a": again}, **kw)


async def test_a_cycle_stops_at_the_limit_after_saving_and_resumes_with_more(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runner = _cycle(cp, max_steps=25)
    with pytest.raises(StepLimitReached) as info:
        await runner.run("t", {"topic": "40"})
    assert (info.value.limit, info.value.thread_id, info.value.step) == (25, "t", 25)
    latest = await cp.load("t")
    assert latest is not None
    assert (latest.step, latest.state.data.n, latest.queue) == (25, 25, [("a", 0)])
    assert "interrupt" not in latest.metadata
    with pytest.raises(StepLimitReached):  # the per-call override counts from the resume
        await runner.resume("t", max_steps=5)
    result = await runner.resume("t", max_steps=100)
    assert result.done
    assert (result.step, result.state.n) == (40, 40)
    assert len(result.executed) == 10


async def test_the_default_limit_stops_an_endless_cycle(cp: HistoryCheckpointer[Doc]) -> None:
    assert DEFAULT_MAX_STEPS == 1000
    with pytest.raises(StepLimitReached) as info:
        await _cycle(cp).run("t", Doc())
    assert info.value.step == DEFAULT_MAX_STEPS
    assert len(await cp.list_checkpoints("t")) == DEFAULT_MAX_STEPS + 1


async def test_wait_for_can_stop_an_endless_cycle_and_the_thread_stays_whole(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runner = _cycle(cp, max_steps=10**9)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(runner.run("t", Doc()), timeout=0.2)
    # A save the cancellation interrupted may still land (all or nothing, see Guarantees), so
    # the history is read first and the latest after it: both must be whole and agree.
    steps = [m.step for m in await cp.list_checkpoints("t")]
    assert steps == list(range(len(steps)))
    latest = await cp.load("t")
    assert latest is not None
    assert latest.step >= steps[-1] >= 1
    assert (latest.state.data.n, latest.queue) == (latest.step, [("a", 0)])


async def test_limits_are_checked(cp: HistoryCheckpointer[Doc]) -> None:
    with pytest.raises(InvalidGraph):
        _cycle(cp, max_steps=0)
    with pytest.raises(InvalidGraph):
        _cycle(cp, max_concurrency=0)
    with pytest.raises(InvalidInput):
        await _cycle(cp).run("t", Doc(), max_steps=True)
    assert await cp.thread_info("t") is None


async def test_a_heartbeat_task_runs_between_nodes(cp: HistoryCheckpointer[Doc]) -> None:
    beats = [0]
    seen: list[int] = []

    async def heartbeat() -> None:
        while True:
            beats[0] += 1
            await asyncio.sleep(0)

    async def a(state: Doc) -> dict[str, Any]:  # never awaits anything itself
        seen.append(beats[0])
        return {"n": state.n + 1}

    async def again(state: Doc) -> str | None:
        return "a" if state.n < 30 else None

    runner = Runner(cp, nodes={"a": a}, entry="a", routers={"a": again})
    task = asyncio.ensure_future(heartbeat())
    await asyncio.sleep(0)
    try:
        await runner.run("t", Doc())
    finally:
        task.cancel()
    assert len(seen) == 30
    # The heartbeat ran between every two nodes: the runner yields to the event loop.
    assert all(b > a for a, b in itertools.pairwise(seen)), seen


async def test_a_node_past_its_timeout_fails_and_the_thread_stays_resumable(
    cp: HistoryCheckpointer[Doc],
) -> None:
    slow = [True]
    runs: list[str] = []

    async def b(state: Doc) -> dict[str, Any]:
        runs.append("b")
        if slow[0]:
            await asyncio.Event().wait()  # never set: only the timeout ends this
        return {"log": ["b"]}

    runner = Runner(
        cp,
        nodes={"a": logging_node("a", runs.append), "b": b},
        entry="a",
        edges={"a": "b"},
        node_timeout={"b": 0.05},
    )
    with pytest.raises(NodeFailed) as info:
        await runner.run("t", Doc())
    assert isinstance(info.value.cause, NodeTimeout)
    assert isinstance(info.value.cause, TimeoutError)
    assert info.value.cause.seconds == 0.05
    latest = await cp.load("t")
    assert latest is not None
    assert (latest.step, latest.node, latest.queue) == (1, "a", [("b", 0)])
    slow[0] = False
    result = await runner.resume("t")
    assert result.done
    assert result.state.log == ["a", "b"]


async def test_a_timeout_applies_to_every_node_unless_overridden(
    cp: HistoryCheckpointer[Doc],
) -> None:
    async def hang(state: Doc) -> None:
        await asyncio.Event().wait()

    runner = Runner(
        cp,
        nodes={"a": hang, "b": hang},
        entry="a",
        edges={"a": "b"},
        timeout=0.01,
        node_timeout={"b": None},
    )
    with pytest.raises(NodeFailed) as info:
        await runner.run("t", Doc())
    assert info.value.node == "a"
    assert isinstance(info.value.cause, NodeTimeout)


async def test_a_nodes_own_timeout_error_is_not_ours(cp: HistoryCheckpointer[Doc]) -> None:
    async def a(state: Doc) -> None:
        raise TimeoutError("the API timed out")

    runner = Runner(cp, nodes={"a": a}, entry="a", timeout=60)
    with pytest.raises(NodeFailed) as info:
        await runner.run("t", Doc())
    assert type(info.value.cause) is TimeoutError


async def test_a_flaky_node_is_retried_and_its_attempts_are_recorded(
    cp: HistoryCheckpointer[Doc],
) -> None:
    calls: list[int] = []

    async def search(state: Doc, ctx: Any) -> dict[str, Any]:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"flaky #{ctx.attempt}")
        return {"log": [f"found on attempt {ctx.attempt}"]}

    async def done(state: Doc) -> dict[str, Any]:
        return {"log": ["done"]}

    runner = Runner(
        cp,
        nodes={"search": search, "done": done},
        entry="search",
        edges={"search": "done"},
        node_retry={"search": RetryPolicy(max_attempts=3, initial_delay=0)},
    )
    result = await runner.run("t", Doc())
    assert calls == [1, 2, 3]
    assert result.done
    assert result.state.log == ["found on attempt 3", "done"]
    assert result.attempts == (3, 1)
    saved = await cp.get("t", 1)
    assert saved is not None
    assert saved.metadata == {
        "attempts": 3,
        "failures": [
            "attempt 1: ConnectionError: flaky #1",
            "attempt 2: ConnectionError: flaky #2",
        ],
    }
    assert [m.step for m in await cp.list_checkpoints("t", filter={"attempts": 3})] == [1]


async def test_retries_exhausted_raise_with_the_cause_and_leave_the_thread_resumable(
    cp: HistoryCheckpointer[Doc],
) -> None:
    runs: list[str] = []
    broken = [True]

    async def b(state: Doc) -> dict[str, Any]:
        runs.append("b")
        if broken[0]:
            raise ConnectionError("down")
        return {"log": ["b"]}

    runner = Runner(
        cp,
        nodes={"a": logging_node("a", runs.append), "b": b},
        entry="a",
        edges={"a": "b"},
        retry=RetryPolicy(max_attempts=4, initial_delay=0),
    )
    with pytest.raises(NodeFailed) as info:
        await runner.run("t", Doc())
    err = info.value
    assert (err.node, err.attempts, err.thread_id, err.step) == ("b", 4, "t", 1)
    assert isinstance(err.__cause__, ConnectionError)
    assert err.failures == tuple(f"attempt {i}: ConnectionError: down" for i in range(1, 5))
    assert runs.count("b") == 4
    latest = await cp.load("t")
    assert latest is not None
    assert (latest.step, latest.queue) == (1, [("b", 0)])
    broken[0] = False
    assert (await runner.resume("t")).done


async def test_only_the_exceptions_a_policy_names_are_retried(
    cp: HistoryCheckpointer[Doc],
) -> None:
    calls = [0]

    async def a(state: Doc) -> None:
        calls[0] += 1
        raise KeyError("a bug, not a blip")

    policy = RetryPolicy(max_attempts=5, initial_delay=0, retry_on=(ConnectionError,))
    with pytest.raises(NodeFailed) as info:
        await Runner(cp, nodes={"a": a}, entry="a", retry=policy).run("t", Doc())
    assert calls == [1]
    assert info.value.attempts == 1

    calls[0] = 0
    predicate = RetryPolicy(max_attempts=3, initial_delay=0, retry_on=lambda e: "bug" in str(e))
    with pytest.raises(NodeFailed):
        await Runner(cp, nodes={"a": a}, entry="a", retry=predicate).run("t2", Doc())
    assert calls == [3]


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_delay=1, backoff=2, max_delay=5, jitter=0.25)
    rng = random.Random(7)
    for attempt, base in [(1, 1), (2, 2), (3, 4), (4, 5), (40, 5), (10_000, 5)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(min(base * 0.75, 5) <= d <= min(base * 1.25, 5) for d in delays)
        if base < 5:
            assert len(set(delays)) > 100  # jittered, not one fixed value
    assert RetryPolicy(jitter=0, initial_delay=0.5).delay(1) == 0.5
    for bad in (0, -1, 1.0, True):
        with pytest.raises(InvalidInput):
            policy.delay(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"initial_delay": -1},
        {"backoff": 0.5},
        {"jitter": 2},
        {"max_delay": float("nan")},
        {"retry_on": (ValueError, "x")},
        {"retry_on": 3},
    ],
)
def test_bad_retry_policies_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(InvalidGraph):
        RetryPolicy(**kw)


async def test_bad_per_node_options_are_refused(cp: HistoryCheckpointer[Doc]) -> None:
    fns = {n: logging_node(n, print) for n in ("a", "b")}
    bad: list[dict[str, Any]] = [
        {"timeout": 0},
        {"timeout": "1"},
        {"node_timeout": {"zz": 1}},
        {"node_retry": {"a": 3}},
        {"retry": RetryPolicy},
        {"renamed_nodes": {"a": "b"}},
        {"renamed_nodes": {"old": "zz"}},
    ]
    for kw in bad:
        with pytest.raises(InvalidGraph):
            Runner(cp, nodes=fns, entry="a", **kw)
