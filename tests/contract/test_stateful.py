"""Random operation sequences against every backend at once: identical results, identical errors.

The in-memory backend is the reference; each rule runs the same call on
every backend and compares the normalised outcomes (wall-clock fields
dropped; forks get the same caller-chosen id on every backend).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from forkpoint import (
    Checkpoint,
    CheckpointMetadata,
    HistoryCheckpointer,
    InMemoryCheckpointer,
    PruneReport,
    ThreadInfo,
)
from tests.conftest import BACKENDS, Counter, make_cp

THREADS = st.sampled_from(["a", "b", "c"])
STEPS = st.integers(min_value=0, max_value=8)
BOUNDS = st.none() | st.integers(min_value=0, max_value=9)
T0 = datetime(2020, 1, 1, tzinfo=UTC)


def normalise(value: Any) -> Any:
    """A comparable form of a result: wall-clock fields of thread records dropped."""
    if isinstance(value, BaseException):
        return ("error", type(value).__name__)
    if isinstance(value, ThreadInfo):
        return ("thread", value.model_dump(exclude={"created_at", "updated_at"}))
    if isinstance(value, PruneReport):
        return ("prune", value.model_dump(exclude={"bytes_freed"}), value.bytes_freed > 0)
    if isinstance(value, Checkpoint | CheckpointMetadata):
        return ("model", value.model_dump())
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


class BackendsAgree(RuleBasedStateMachine):
    OPTIONS: ClassVar[dict[str, Any]] = {}  # checkpointer options every backend is opened with

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        self.backends: dict[str, HistoryCheckpointer[Counter]] = {}
        for name in sorted(BACKENDS):
            folder = Path(self.tmp.name) / name
            folder.mkdir()
            self.backends[name] = self.loop.run_until_complete(
                BACKENDS[name](folder, Counter, **self.OPTIONS)
            )
        assert isinstance(self.backends["memory"], InMemoryCheckpointer)
        self.forks = 0

    def teardown(self) -> None:
        for cp in self.backends.values():
            self.loop.run_until_complete(cp.close())
        self.loop.close()
        self.tmp.cleanup()

    def same(self, call: Callable[[HistoryCheckpointer[Counter]], Awaitable[Any]]) -> Any:
        """Run ``call`` on every backend; demand equal normalised outcomes; the reference's."""

        async def outcome(cp: HistoryCheckpointer[Counter]) -> Any:
            try:
                return await call(cp)
            except Exception as exc:  # noqa: BLE001 - errors are outcomes to compare
                return exc

        results = {
            name: self.loop.run_until_complete(outcome(cp)) for name, cp in self.backends.items()
        }
        reference = normalise(results["memory"])
        for name, result in results.items():
            assert normalise(result) == reference, (name, result, results["memory"])
        return results["memory"]

    @rule(thread=THREADS, step=STEPS, n=st.integers(0, 3), node=st.sampled_from(["x", "y"]))
    def save(self, thread: str, step: int, n: int, node: str) -> None:
        cp = make_cp_fixed(thread, step, n=n, node=node)
        self.same(lambda b: b.save(cp.model_copy(deep=True)))

    @rule(thread=THREADS, gap=st.integers(1, 2))
    def save_after_latest(self, thread: str, gap: int) -> None:
        latest = self.same(lambda b: b.load(thread))
        step = 0 if latest is None else latest.step + gap
        self.same(lambda b: b.save(make_cp_fixed(thread, step)))

    @rule(thread=THREADS)
    def retry_latest(self, thread: str) -> None:
        latest = self.same(lambda b: b.load(thread))
        if latest is not None:
            self.same(lambda b: b.save(latest.model_copy(deep=True)))

    @rule(thread=THREADS)
    def load(self, thread: str) -> None:
        self.same(lambda b: b.load(thread))

    @rule(thread=THREADS, step=STEPS)
    def get(self, thread: str, step: int) -> None:
        self.same(lambda b: b.get(thread, step))

    @rule(
        thread=THREADS,
        after=BOUNDS,
        before=BOUNDS,
        limit=st.none() | st.integers(0, 4),
        newest=st.booleans(),
        flt=st.none() | st.fixed_dictionaries({"n": st.integers(0, 3)}),
    )
    def list_checkpoints(
        self,
        thread: str,
        after: int | None,
        before: int | None,
        limit: int | None,
        newest: bool,
        flt: dict[str, Any] | None,
    ) -> None:
        self.same(
            lambda b: b.list_checkpoints(
                thread, after=after, before=before, limit=limit, newest_first=newest, filter=flt
            )
        )

    @rule(thread=THREADS, step=STEPS, reuse=st.booleans())
    def fork(self, thread: str, step: int, reuse: bool) -> None:
        if not reuse:
            self.forks += 1
        name = f"f{self.forks}"  # a retry reuses the last id: idempotent or ThreadExists
        self.same(lambda b: b.fork(thread, step, new_thread_id=name))

    @rule(step=STEPS)
    def fork_of_fork(self, step: int) -> None:
        source = f"f{self.forks}"
        self.forks += 1
        self.same(lambda b: b.fork(source, step, new_thread_id=f"f{self.forks}"))

    @rule(thread=THREADS | st.sampled_from(["f1", "f2"]))
    def delete_thread(self, thread: str) -> None:
        self.same(lambda b: b.delete_thread(thread))

    @rule(
        thread=st.none() | THREADS,
        keep_last=st.none() | st.integers(1, 3),
        old=st.booleans(),
        dry_run=st.booleans(),
    )
    def prune(self, thread: str | None, keep_last: int | None, old: bool, dry_run: bool) -> None:
        older_than = timedelta(days=1) if old else None
        self.same(
            lambda b: b.prune(thread, keep_last=keep_last, older_than=older_than, dry_run=dry_run)
        )

    @rule(limit=st.none() | st.integers(0, 3), after=st.none() | st.sampled_from(["a", "b", "f"]))
    def list_threads(self, limit: int | None, after: str | None) -> None:
        self.same(lambda b: b.list_threads(limit=limit, after=after))

    @rule(thread=THREADS | st.sampled_from(["f1"]), owner=st.sampled_from(["ann", "bob"]))
    def set_thread_metadata(self, thread: str, owner: str) -> None:
        self.same(lambda b: b.set_thread_metadata(thread, {"owner": owner}))

    @rule(owner=st.sampled_from(["ann", "bob"]), limit=st.none() | st.integers(0, 2))
    def list_threads_filtered(self, owner: str, limit: int | None) -> None:
        self.same(lambda b: b.list_threads(limit=limit, filter={"owner": owner}))

    @rule(thread=THREADS | st.sampled_from(["f1"]))
    def thread_info(self, thread: str) -> None:
        self.same(lambda b: b.thread_info(thread))

    @rule(thread=THREADS)
    def list_forks(self, thread: str) -> None:
        self.same(lambda b: b.list_forks(thread))

    @invariant()
    def whole_store_agrees(self) -> None:
        threads = self.same(lambda b: b.list_threads())
        for info in threads:
            tid: str = info.thread_id
            self.same(lambda b: b.list_checkpoints(tid))  # noqa: B023 - run before the next loop
            self.same(lambda b: b.load(tid))  # noqa: B023


def make_cp_fixed(thread: str, step: int, *, n: int = 0, node: str = "x") -> Checkpoint[Counter]:
    """A checkpoint whose every field, created_at included, follows from the arguments.

    So an equal call is an identical retry on every backend.
    """
    return make_cp(
        thread,
        step,
        n=n,
        node=node,
        metadata={"n": n},
        created_at=T0 + timedelta(microseconds=step),
    )


def _runs(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


BackendsAgree.TestCase.settings = _runs(30)
TestBackendsAgree = BackendsAgree.TestCase


class BackendsAgreeWithKeepLast(BackendsAgree):
    """The same, with a retention policy every save enforces (SQLite runs its own DELETE)."""

    OPTIONS: ClassVar[dict[str, Any]] = {"keep_last": 2}


BackendsAgreeWithKeepLast.TestCase.settings = _runs(15)
TestBackendsAgreeWithKeepLast = BackendsAgreeWithKeepLast.TestCase
