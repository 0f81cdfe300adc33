"""Workloads W1-W8 and the retention figures, each contender timed in alternation.

Each ``run_*`` coroutine measures every contender once (one repetition) in the
order given and records one sample per (workload, metric, contender).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sqlite3
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .fp import ForkpointStore
from .raw import RawAioStore, RawStore
from .state import BenchState, Sizes, fixed_states, growing_states, json_size

__all__ = ["Bench", "Samples", "async_latencies", "latencies"]

FP, FP_NORMAL, FP_KEEP = "forkpoint", "forkpoint-normal", "forkpoint-keep_last"
LG, RAW_FULL, RAW_NORMAL = "langgraph", "raw-full", "raw-normal"
RAW_GROUP_FULL, RAW_GROUP_NORMAL = "raw-group-full", "raw-group-normal"
RAW_AIO_FULL, RAW_AIO_NORMAL = "raw-aio-full", "raw-aio-normal"
HOP = "aiosqlite-hop"
FP_UNVERSIONED = "forkpoint-unversioned"


class AsyncStore(Protocol):
    supports_fork: bool

    def prepare(
        self, thread_id: str, states: list[BenchState], first_step: int = 0
    ) -> list[Any]: ...
    async def save(self, item: Any) -> None: ...
    async def load(self, thread_id: str) -> Any: ...
    async def list(self, thread_id: str) -> int: ...
    async def fork(self, thread_id: str, at_step: int, new_thread_id: str) -> None: ...
    async def close(self) -> None: ...


@dataclass
class Samples:
    """(workload, metric, contender) -> {repetition: value}, and notes for the report."""

    values: dict[tuple[str, str, str], dict[int, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: set[str] = field(default_factory=set)

    def add(self, workload: str, metric: str, contender: str, rep: int, value: float) -> None:
        self.values.setdefault((workload, metric, contender), {})[rep] = value

    def get(self, workload: str, metric: str, contender: str) -> dict[int, float]:
        return self.values.get((workload, metric, contender), {})


def db_bytes(path: str) -> int:
    """File size after the WAL is checkpointed into it and truncated."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def latencies(call: Callable[[], object], n: int, warmup: int = 20) -> list[float]:
    """Seconds per call of ``n`` timed calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    gc.collect()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        out.append(time.perf_counter() - t0)
    return out


async def async_latencies(
    call: Callable[[], Awaitable[object]], n: int, warmup: int = 20
) -> list[float]:
    """``latencies`` for a coroutine function."""
    for _ in range(warmup):
        await call()
    gc.collect()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        out.append(time.perf_counter() - t0)
    return out


W4_SLICES = 10
"""W4 takes each contender's loads in this many slices, in turns (see ``Bench.run_w4``)."""


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


class Bench:
    """The whole suite over one scratch directory."""

    def __init__(self, workdir: Path, sizes: Sizes, *, langgraph: bool) -> None:
        self.dir = workdir
        self.sizes = sizes
        self.langgraph = langgraph
        self.samples = Samples()
        if not langgraph:
            self.samples.skipped.add(LG)
        self.w1_states = fixed_states(sizes.w1_saves, 1_000)
        self.w2_states = fixed_states(sizes.w2_saves, 100_000, seed=3)
        self.w3_states = fixed_states(sizes.w3_saves, 1_000, seed=4)
        self.w45_states = fixed_states(sizes.w45_steps, 1_000, seed=5)
        self.w6_states = fixed_states(sizes.w6_steps, 10_000, seed=6)
        self.readers: dict[str, Any] = {}

    def path(self, name: str) -> str:
        return str(self.dir / f"{name}.db")

    def order(self, names: list[str], rep: int) -> list[str]:
        """Contenders rotated by repetition, so none always runs first or last."""
        names = [n for n in names if self.langgraph or n != LG]
        k = rep % len(names)
        return names[k:] + names[:k]

    async def open_store(self, name: str, path: str) -> AsyncStore:
        if name == FP:
            return await ForkpointStore.open(path)
        if name == FP_NORMAL:
            return await ForkpointStore.open(path, durability="normal")
        if name == FP_KEEP:
            return await ForkpointStore.open(path, keep_last=self.sizes.keep_last)
        if name == LG:
            from .lg import LangGraphStore

            return await LangGraphStore.open(path)
        raise ValueError(name)

    # --- writes: W1, W2, W3, W7, retention ---------------------------------------------------

    async def _sequential(self, name: str, path: str, states: list[BenchState]) -> float:
        """Seconds for one thread's sequential saves."""
        if name in (RAW_FULL, RAW_NORMAL):
            raw = RawStore(path, "full" if name == RAW_FULL else "normal")
            gc.collect()
            t0 = time.perf_counter()
            for step, state in enumerate(states):
                raw.save("t", step, state)
            elapsed = time.perf_counter() - t0
            raw.close()
            return elapsed
        if name in (RAW_AIO_FULL, RAW_AIO_NORMAL):
            aio = await RawAioStore.open(path, "full" if name == RAW_AIO_FULL else "normal")
            gc.collect()
            t0 = time.perf_counter()
            for step, state in enumerate(states):
                await aio.save("t", step, state)
            elapsed = time.perf_counter() - t0
            await aio.close()
            return elapsed
        store = await self.open_store(name, path)
        items = store.prepare("t", states)
        gc.collect()
        t0 = time.perf_counter()
        for item in items:
            await store.save(item)
        elapsed = time.perf_counter() - t0
        await store.close()
        return elapsed

    async def run_w1(self, rep: int) -> None:
        names = [FP, FP_NORMAL, FP_KEEP, LG, RAW_FULL, RAW_NORMAL, RAW_AIO_FULL, RAW_AIO_NORMAL]
        n = len(self.w1_states)
        for name in self.order(names, rep):
            path = self.path(f"w1-{rep}-{name}")
            elapsed = await self._sequential(name, path, self.w1_states)
            self.samples.add("W1", "ckpt/s", name, rep, n / elapsed)
            if name in (FP, LG, RAW_FULL):
                self.samples.add("W7", "bytes/ckpt", name, rep, db_bytes(path) / n)
            if name == FP:
                await self._prune_vacuum(path, rep)
            remove_db(path)

    async def _prune_vacuum(self, path: str, rep: int) -> None:
        """Retention: prune W1's thread to keep_last, vacuum, and measure the file."""
        before = db_bytes(path)
        store = await ForkpointStore.open(path)
        t0 = time.perf_counter()
        report = await store.cp.prune("t", keep_last=self.sizes.keep_last)
        t1 = time.perf_counter()
        await store.cp.vacuum()
        t2 = time.perf_counter()
        await store.close()
        after = db_bytes(path)
        self.samples.add("R", "prune s", FP, rep, t1 - t0)
        self.samples.add("R", "vacuum s", FP, rep, t2 - t1)
        self.samples.add("R", "bytes before", FP, rep, before)
        self.samples.add("R", "bytes after", FP, rep, after)
        self.samples.add("R", "removed", FP, rep, report.checkpoints_removed)

    async def run_w2(self, rep: int) -> None:
        names = [FP, FP_NORMAL, LG, RAW_FULL, RAW_NORMAL]
        n = len(self.w2_states)
        for name in self.order(names, rep):
            path = self.path(f"w2-{rep}-{name}")
            elapsed = await self._sequential(name, path, self.w2_states)
            self.samples.add("W2", "ckpt/s", name, rep, n / elapsed)
            remove_db(path)

    async def run_w3(self, rep: int) -> None:
        names = [FP, FP_NORMAL, LG, RAW_FULL, RAW_NORMAL, RAW_GROUP_FULL, RAW_GROUP_NORMAL]
        tasks, states = self.sizes.w3_tasks, self.w3_states
        total = tasks * len(states)
        for name in self.order(names, rep):
            path = self.path(f"w3-{rep}-{name}")
            if name in (RAW_FULL, RAW_NORMAL, RAW_GROUP_FULL, RAW_GROUP_NORMAL):
                raw = RawStore(path, "full" if name in (RAW_FULL, RAW_GROUP_FULL) else "normal")
                gc.collect()
                t0 = time.perf_counter()
                for step, state in enumerate(states):  # the tasks' saves, one after another
                    if name in (RAW_GROUP_FULL, RAW_GROUP_NORMAL):  # one transaction per round
                        raw.save_group([(f"t{task}", step, state) for task in range(tasks)])
                        continue
                    for task in range(tasks):
                        raw.save(f"t{task}", step, state)
                elapsed = time.perf_counter() - t0
                raw.close()
            else:
                store = await self.open_store(name, path)
                per_task = [store.prepare(f"t{task}", states) for task in range(tasks)]

                async def one(items: list[Any], store: AsyncStore = store) -> None:
                    for item in items:
                        await store.save(item)

                gc.collect()
                t0 = time.perf_counter()
                await asyncio.gather(*(one(items) for items in per_task))
                elapsed = time.perf_counter() - t0
                await store.close()
            self.samples.add("W3", "ckpt/s", name, rep, total / elapsed)
            remove_db(path)

    # --- reads: W4, W5, W6 over databases built once -----------------------------------------

    async def build_read_fixtures(self) -> None:
        """One database per contender: a W4/W5 thread and a W6 thread (not timed)."""
        raw = RawStore(self.path("read-raw"), "normal")
        for step, state in enumerate(self.w45_states):
            raw.save("long", step, state)
        for step, state in enumerate(self.w6_states):
            raw.save("fork-src", step, state)
        raw.close()
        self.readers[RAW_FULL] = RawStore(self.path("read-raw"), "full")
        self.readers[RAW_AIO_FULL] = await RawAioStore.open(self.path("read-raw"), "full")

        fp = await ForkpointStore.open(self.path("read-fp"), durability="normal")
        for cp in [*fp.prepare("long", self.w45_states), *fp.prepare("fork-src", self.w6_states)]:
            await fp.save(cp)
        await fp.close()
        self.readers[FP] = await ForkpointStore.open(self.path("read-fp"))
        self.readers[FP_UNVERSIONED] = await ForkpointStore.open(
            self.path("read-fp"), versions=False
        )

        if self.langgraph:
            from .lg import LangGraphStore

            lg = await LangGraphStore.open(self.path("read-lg"))
            await lg.set_synchronous("OFF")
            for item in [
                *lg.prepare("long", self.w45_states),
                *lg.prepare("fork-src", self.w6_states),
            ]:
                await lg.save(item)
            await lg.set_synchronous("FULL")
            self.readers[LG] = lg

    async def close_readers(self) -> None:
        for name, store in self.readers.items():
            if name == RAW_FULL:
                store.close()
            else:
                await store.close()
        self.readers.clear()

    async def run_w4(self, rep: int) -> None:
        """Each contender's ``w4_loads`` loads, taken in slices that take turns.

        On a shared machine a burst of other work lasts longer than one
        contender's thousand loads: run as one block each, a burst lands on
        whichever contender ran then and skews that repetition's ratios.
        Slices of ``W4_SLICES`` take turns (rotated per repetition), so every
        contender samples the same stretch of time.
        """
        names = self.order([FP, LG, RAW_FULL, RAW_AIO_FULL, HOP, FP_UNVERSIONED], rep)
        per_slice = max(1, self.sizes.w4_loads // W4_SLICES)
        lat: dict[str, list[float]] = {name: [] for name in names}
        for index in range(W4_SLICES):
            warmup = 20 if index == 0 else 2
            for name in names:
                if name == RAW_FULL:
                    call = functools.partial(self.readers[RAW_FULL].load, "long")
                    lat[name] += latencies(call, per_slice, warmup)
                    continue
                store = self.readers[FP if name == HOP else name]
                # HOP: the floor of any read through a worker thread, one round trip doing nothing.
                acall: Callable[[], Awaitable[object]] = (
                    store.hop if name == HOP else functools.partial(store.load, "long")
                )
                lat[name] += await async_latencies(acall, per_slice, warmup)
        for name, values in lat.items():
            self.samples.add("W4", "median µs", name, rep, statistics.median(values) * 1e6)
            self.samples.add("W4", "p99 µs", name, rep, _p99(values) * 1e6)

    async def run_w5(self, rep: int) -> None:
        for name in self.order([FP, LG, RAW_FULL], rep):
            store = self.readers[name]
            gc.collect()
            t0 = time.perf_counter()
            count = store.list("long") if name == RAW_FULL else await store.list("long")
            elapsed = time.perf_counter() - t0
            if (count if isinstance(count, int) else len(count)) != self.sizes.w45_steps:
                raise AssertionError(f"{name} listed {count} checkpoints")
            self.samples.add("W5", "s", name, rep, elapsed)
            if rep == 0:  # peak memory, in a separate untimed pass (tracemalloc slows Python)
                gc.collect()
                tracemalloc.start()
                result = store.list("long") if name == RAW_FULL else await store.list("long")
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                del result
                self.samples.add("W5", "peak MiB", name, rep, peak / 2**20)

    async def run_w6(self, rep: int) -> None:
        at = self.sizes.w6_steps - 1
        for name in self.order([FP, LG, RAW_FULL], rep):
            store = self.readers[name]
            target = f"fork-{rep}"
            if name == RAW_FULL:
                gc.collect()
                t0 = time.perf_counter()
                store.fork("fork-src", at, target)
            else:
                if not store.supports_fork:
                    continue
                gc.collect()
                t0 = time.perf_counter()
                await store.fork("fork-src", at, target)
            self.samples.add("W6", "s", name, rep, time.perf_counter() - t0)

    # --- W8: storage of a growing state ------------------------------------------------------

    async def run_w8(self) -> None:
        states = growing_states(self.sizes.w8_steps)
        final = json_size(states[-1])
        self.samples.notes.append(
            f"W8: {len(states)} steps, final state {final:,} bytes of JSON "
            f"(full copies of every step would be {sum(map(json_size, states)):,} bytes)."
        )
        for name in [FP, LG, RAW_FULL]:
            if name == LG and not self.langgraph:
                continue
            path = self.path(f"w8-{name}")
            await self._sequential(name, path, states)
            self.samples.add("W8", "db/state", name, 0, db_bytes(path) / final)
            self.samples.add("W8", "db MB", name, 0, db_bytes(path) / 1e6)
            if name == FP:
                await self._w8_load(path, states[-1])
            remove_db(path)

    async def _w8_load(self, path: str, final: BenchState) -> None:
        """Load of W8's latest step vs a thread whose only row is the same state in full."""
        store = await ForkpointStore.open(path)
        for item in store.prepare("snapshot", [final]):
            await store.save(item)
        grown = json_size((await store.cp.load("t")).state.data)  # type: ignore[union-attr]
        if grown != json_size(final):
            raise AssertionError("W8's latest state does not load back whole")
        for rep in range(max(1, self.sizes.reps)):
            times: dict[str, list[float]] = {"t": [], "snapshot": []}
            for _ in range(max(10, self.sizes.w4_loads // 10)):
                for tid in ("t", "snapshot"):
                    t0 = time.perf_counter()
                    await store.load(tid)
                    times[tid].append(time.perf_counter() - t0)
            self.samples.add("W8", "load µs", FP, rep, statistics.median(times["t"]) * 1e6)
            self.samples.add(
                "W8", "snapshot load µs", FP, rep, statistics.median(times["snapshot"]) * 1e6
            )
        await store.close()
