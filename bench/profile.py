"""The measurements behind bench/NOTES.md: ``python -m bench.profile [section ...]``.

Each section splits one of forkpoint's hot paths into its parts and prints
medians. The proposals of NOTES.md that were applied now live in ``src/``;
the two that were not (reading on the calling thread, forward deltas) are
still prototyped here from forkpoint's own pieces and checked against it.
Sections: hop, encode, load, list, reads, delta, threads.
"""

# ruff: noqa: RUF001 - ratios are printed with the multiplication sign

from __future__ import annotations

import asyncio
import gc
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import forkpoint.sqlite._jobs as fs_jobs
import forkpoint.sqlite._writer as fs_writer
from forkpoint import Checkpoint, GraphState
from forkpoint._delta import apply_deltas, make_delta
from forkpoint.codec import (
    StateCodec,
    _non_finite_path,
    checkpoint_metadata,
    format_time,
)
from forkpoint.sqlite._sql import SQL

from .fp import ForkpointStore
from .raw import RawAioStore, RawStore
from .state import BenchState, fixed_states, growing_states, json_size
from .workloads import async_latencies, db_bytes, latencies


def _us(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e6:,.1f} µs"


def _time(fn: Callable[[], object], n: int = 2000) -> list[float]:
    return latencies(fn, n, warmup=min(50, n))


async def _atime(fn: Callable[[], Awaitable[object]], n: int = 2000) -> list[float]:
    return await async_latencies(fn, n, warmup=min(50, n))


# --- sections -------------------------------------------------------------------------------


async def _thread_db(directory: str, steps: int, approx: int, name: str) -> str:
    path = f"{directory}/{name}.db"
    store = await ForkpointStore.open(path, durability="normal")
    for item in store.prepare("long", fixed_states(steps, approx, seed=5)):
        await store.save(item)
    await store.close()
    return path


async def section_hop(directory: str) -> None:
    store = await ForkpointStore.open(f"{directory}/hop.db")
    engine = store.cp.engine
    times = await _atime(lambda: engine.read(lambda conn: None))
    print(
        f"hop: one connection-thread round trip (loop → worker → loop), nothing done: {_us(times)}"
    )
    await store.close()


async def section_encode(directory: str) -> None:
    codec = StateCodec(BenchState)
    print(f"encode: NaN scan needed for this state schema: {codec._scan}")
    for size in (1_000, 100_000):
        _encode_one(codec, size)


def _encode_one(codec: StateCodec[BenchState], size: int) -> None:
    state = fixed_states(2, size, seed=3)[1]
    cp = Checkpoint[BenchState](
        thread_id="t", state=GraphState[BenchState](data=state), step=1, node="node"
    )
    raw = codec._serializer.to_json(state)
    n = 2000 if size < 10_000 else 300
    now = datetime.now(UTC)
    print(
        f"  ~{size:,} B state: codec.encode {_us(_time(lambda: codec.encode(cp), n))}; "
        f"serializer.to_json alone {_us(_time(lambda: codec._serializer.to_json(state), n))}; "
        f"NaN scan (when needed) {_us(_time(lambda: _non_finite_path(raw), n))}; "
        f"format_time {_us(_time(lambda: format_time(now), n))}"
    )


async def section_load(directory: str) -> None:
    """Where a load's time goes; the inline variant is proposal 1 (declined, see NOTES.md)."""
    path = await _thread_db(directory, 10_000, 1_000, "load")
    store = await ForkpointStore.open(path)
    cp = store.cp
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    conn.execute("PRAGMA query_only = 1")
    codec = cp._codec

    def inline_load() -> Checkpoint[BenchState]:
        row = fs_jobs.read_row(conn, "long", None)
        assert row is not None
        return codec.decode(row)

    current = await cp.load("long")
    if current is None or current.model_dump() != inline_load().model_dump():
        raise AssertionError("inline load differs")
    encoded = fs_jobs.read_row(conn, "long", None)
    assert encoded is not None
    t_load = await _atime(lambda: cp.load("long"))
    t_hop = await _atime(lambda: cp.engine.read(lambda c: None))
    t_sql = _time(lambda: fs_jobs.read_row(conn, "long", None))
    t_validate = _time(lambda: BenchState.model_validate_json(encoded.state))
    t_decode = _time(lambda: codec.decode(encoded))
    t_inline = _time(inline_load)
    raw = RawStore(f"{directory}/raw.db", "full")
    for step, state in enumerate(fixed_states(200, 1_000, seed=5)):
        raw.save("long", step, state)
    t_raw = _time(lambda: raw.load("long"))
    raw.close()
    print(
        f"load (latest of 10,000 × ~1 KB): forkpoint load {_us(t_load)} | bare hop {_us(t_hop)} | "
        f"SQL on the calling thread {_us(t_sql)} | model_validate_json {_us(t_validate)} | "
        f"codec.decode {_us(t_decode)} | inline load (SQL + decode, no hop) {_us(t_inline)} | "
        f"raw load {_us(t_raw)}"
    )
    conn.close()
    await store.close()


async def section_list(directory: str) -> None:
    path = await _thread_db(directory, 10_000, 1_000, "list")
    store = await ForkpointStore.open(path)
    cp = store.cp

    def fetch(conn: sqlite3.Connection) -> list[Any]:
        return conn.execute(SQL.HISTORY + " ORDER BY c.step", ("long",)).fetchall()

    rows = await cp.engine.read(fetch)
    times = await _atime(lambda: cp.list_checkpoints("long"), 9)
    gc.collect()
    tracemalloc.start()
    result = await cp.list_checkpoints("long")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del result
    t_fetch = await _atime(lambda: cp.engine.read(fetch), 9)
    t_decode = _time(lambda: [checkpoint_metadata(*r) for r in rows], 9)
    print(
        f"list 10,000: list_checkpoints {statistics.median(times) * 1e3:.1f} ms, peak "
        f"{peak / 2**20:.2f} MiB | fetchall alone {statistics.median(t_fetch) * 1e3:.1f} ms | "
        f"decoding the rows alone {statistics.median(t_decode) * 1e3:.1f} ms"
    )
    await store.close()


async def section_reads(directory: str) -> None:
    """Where SQLite decodes a read: inside the reader's hop (now) or on the loop after it.

    *Before* is what a load did before SQLite decoded in its reader's hop:
    read the row (one framed read transaction), then decode it on the event
    loop. (The listing's peak before that change, every raw row fetched and
    then decoded, was 7.55 MiB; ``bench/NOTES.md`` has the run.)
    Rounds alternate the variants; each figure is a median over rounds, and
    ``÷ ceiling`` the median of per-round ratios to raw's own load run as one
    call on a forkpoint connection thread.
    """
    path = await _thread_db(directory, 10_000, 1_000, "reads")
    store = await ForkpointStore.open(path)
    cp = store.cp
    raw = await RawAioStore.open(f"{directory}/reads-raw.db", "full")
    raw_store = RawStore(f"{directory}/reads-raw.db", "normal")
    for step, state in enumerate(fixed_states(200, 1_000, seed=5)):
        raw_store.save("long", step, state)
    raw_store.close()

    async def before() -> object:  # as before: a framed read, then decoding on the loop
        row = await cp.engine.read(fs_jobs.read_row, "long", None)
        assert row is not None
        return cp._decode_row(row)

    variants: dict[str, Callable[[], Awaitable[object]]] = {
        "load (decoded in the reader's hop, one SELECT)": lambda: cp.load("long"),
        "framed read, decoded on the loop after the hop (before)": before,
        "raw's load as one connection-thread call (ceiling)": lambda: raw.load("long"),
        "round trip doing nothing": store.hop,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(9):
        names = list(variants)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in names:
            times[name].append(statistics.median(await _atime(variants[name], 500)))
    ceiling = times["raw's load as one connection-thread call (ceiling)"]
    for name, values in times.items():
        ratio = statistics.median(v / c for v, c in zip(values, ceiling, strict=True))
        print(f"reads: {name}: {_us(values)} ({ratio:.2f}× ceiling)")

    async def listed() -> list[Any]:
        return await cp.list_checkpoints("long")

    peaks = {}
    listings: dict[str, Callable[[], Awaitable[list[Any]]]] = {
        "decoded a chunk at a time on the reader": listed,
    }
    for name, listing in listings.items():
        gc.collect()
        tracemalloc.start()
        result = await listing()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert len(result) == 10_000
        del result
    print(
        "reads: list_checkpoints of 10,000, peak (tracemalloc): "
        + "; ".join(f"{name} {peak / 2**20:.2f} MiB" for name, peak in peaks.items())
    )
    await raw.close()
    await store.close()


class ForwardDeltaStore(RawStore):
    """Prototype: new rows are *forward* deltas against the previous state.

    A full row (snapshot) is written when the deltas since the last one would
    add up to the state's own size, or after ``max_run`` deltas; loading the
    latest reads the last snapshot and the deltas after it (at most about
    twice a full row's bytes).
    """

    def __init__(self, path: str, durability: Any, max_run: int = 256) -> None:
        super().__init__(path, durability)
        self.conn.execute("ALTER TABLE checkpoints ADD COLUMN encoding INTEGER NOT NULL DEFAULT 0")
        self.max_run = max_run
        self.last: dict[str, tuple[str, int, int]] = {}  # thread -> (text, run, run bytes)

    def save(self, thread_id: str, step: int, state: BenchState) -> None:
        text = state.model_dump_json()
        prev = self.last.get(thread_id)
        stored, encoding, run, run_bytes = text, 0, 0, 0
        if prev is not None and len(text) >= 2048 and prev[1] < self.max_run:
            delta = make_delta(text, prev[0])  # rebuilds text from the previous state
            if delta is not None and prev[2] + len(delta) < len(text):
                stored, encoding, run, run_bytes = delta, 2, prev[1] + 1, prev[2] + len(delta)
        now = format_time(datetime.now(UTC))
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO checkpoints (thread_id, step, created_at, node, metadata, queue, state, "
            "encoding) VALUES (?, ?, ?, 'node', '{}', '[]', ?, ?)",
            (thread_id, step, now, stored, encoding),
        )
        conn.execute(
            "INSERT INTO threads (thread_id, created_at, updated_at, latest_step, checkpoint_count) "
            "VALUES (?, ?, ?, ?, 1) ON CONFLICT (thread_id) DO UPDATE SET latest_step = "
            "excluded.latest_step, updated_at = excluded.updated_at, "
            "checkpoint_count = checkpoint_count + 1",
            (thread_id, now, now, step),
        )
        conn.execute("COMMIT")
        self.last[thread_id] = (text, run, run_bytes)

    def load(self, thread_id: str) -> BenchState | None:
        rows = self.conn.execute(
            "SELECT encoding, state FROM checkpoints WHERE thread_id = ? AND step >= "
            "(SELECT max(step) FROM checkpoints WHERE thread_id = ? AND encoding = 0) ORDER BY step",
            (thread_id, thread_id),
        ).fetchall()
        if not rows:
            return None
        text = rows[0][1] if len(rows) == 1 else apply_deltas(rows[0][1], [r[1] for r in rows[1:]])
        return BenchState.model_validate_json(text)


async def section_delta(directory: str) -> None:
    """W2 throughput and W8 size: reverse deltas (forkpoint now), none, forward (prototype)."""
    states = fixed_states(200, 100_000, seed=3)
    samples: dict[str, list[float]] = {}
    for rep in range(3):
        for name in ("forkpoint", "forkpoint-no-delta", "raw-full", "forward-delta-proto"):
            path = f"{directory}/w2-{rep}-{name}.db"
            gc.collect()
            if name.startswith("forkpoint"):
                fs_jobs.DELTA_MIN_CHARS = 2048 if name == "forkpoint" else 10**12  # type: ignore[attr-defined,unused-ignore]
                store = await ForkpointStore.open(path)
                items = store.prepare("t", states)
                t0 = time.perf_counter()
                for item in items:
                    await store.save(item)
                elapsed = time.perf_counter() - t0
                await store.close()
            else:
                raw = (
                    RawStore(path, "full")
                    if name == "raw-full"
                    else ForwardDeltaStore(path, "full")
                )
                t0 = time.perf_counter()
                for step, state in enumerate(states):
                    raw.save("t", step, state)
                elapsed = time.perf_counter() - t0
                raw.close()
            samples.setdefault(name, []).append(len(states) / elapsed)
            if rep == 0:
                print(f"  W2 {name}: {db_bytes(path) / 1e6:.2f} MB for {len(states)} saves")
    fs_jobs.DELTA_MIN_CHARS = 2048  # type: ignore[attr-defined,unused-ignore]
    for name, values in samples.items():
        ratio = statistics.median(a / b for a, b in zip(values, samples["raw-full"], strict=True))
        print(f"W2 (FULL) {name}: {statistics.median(values):,.0f} ckpt/s, {ratio:.2f}× raw-full")
    grow = growing_states(1000)
    fwd = ForwardDeltaStore(f"{directory}/w8-fwd.db", "normal")
    for step, state in enumerate(grow):
        fwd.save("t", step, state)
    final = json_size(grow[-1])
    full = RawStore(f"{directory}/w8-fwd.db", "normal")
    full.save("snapshot", 0, grow[-1])
    full.close()
    t_fwd = _time(lambda: fwd.load("t"), 100)
    t_full = _time(lambda: RawStore.load(fwd, "snapshot"), 100)
    fwd.close()
    print(
        f"W8 forward-delta prototype: database {db_bytes(f'{directory}/w8-fwd.db') / final:.1f}× the "
        f"final state; load latest {_us(t_fwd)} vs a full-snapshot row {_us(t_full)}"
    )
    w2 = ForwardDeltaStore(f"{directory}/w2-load.db", "normal")
    for step, state in enumerate(states):
        w2.save("t", step, state)
    w2.save("snapshot", 0, states[-1])
    t_fwd = _time(lambda: w2.load("t"), 100)
    t_full = _time(lambda: w2.load("snapshot"), 100)
    w2.close()
    print(f"W2 forward-delta prototype: load latest {_us(t_fwd)} vs a full row {_us(t_full)}")


async def _writer_cpu(store: ForkpointStore) -> float:
    """CPU seconds the writer's connection thread has used so far."""
    return await store.cp.engine.on_writer(lambda _conn: time.thread_time())


async def _saves_cpu(store: ForkpointStore, runs: list[list[Any]]) -> tuple[float, float, float]:
    """(wall, loop-thread CPU, writer-thread CPU) seconds for ``runs`` saved concurrently."""

    async def one(items: list[Any]) -> None:
        for item in items:
            await store.save(item)

    w0 = await _writer_cpu(store)
    gc.collect()
    m0, t0 = time.thread_time(), time.perf_counter()
    await asyncio.gather(*(one(items) for items in runs))
    wall, loop_cpu = time.perf_counter() - t0, time.thread_time() - m0
    return wall, loop_cpu, await _writer_cpu(store) - w0


def _answer_all(conn: sqlite3.Connection, jobs: list[Any]) -> list[tuple[bool, Any]]:
    """A writer that runs nothing and answers every job: the loop thread's share alone."""
    return [(True, None) for _ in jobs]


async def section_threads(directory: str) -> None:
    """Where a save's time goes between the loop thread and the writer thread (W1 NORMAL, W3)."""
    w1_states = fixed_states(2_000, 1_000, seed=1)
    w3_states = fixed_states(50, 1_000, seed=4)
    for rep in range(3):
        store = await ForkpointStore.open(f"{directory}/t1-{rep}.db", durability="normal")
        n = len(w1_states)
        wall, loop_cpu, writer_cpu = await _saves_cpu(store, [store.prepare("t", w1_states)])
        await store.close()
        raw = RawStore(f"{directory}/t1-raw-{rep}.db", "normal")
        c0, t0 = time.thread_time(), time.perf_counter()
        for step, state in enumerate(w1_states):
            raw.save("t", step, state)
        raw_wall, raw_cpu = time.perf_counter() - t0, time.thread_time() - c0
        raw.close()
        store = await ForkpointStore.open(f"{directory}/t3-{rep}.db")
        runs = [store.prepare(f"t{task}", w3_states) for task in range(100)]
        w3_wall, w3_loop, w3_writer = await _saves_cpu(store, runs)
        await store.close()
        # The loop thread's own share: the same W3 saves answered by a writer that runs nothing.
        store = await ForkpointStore.open(f"{directory}/t3-noop-{rep}.db")
        runs = [store.prepare(f"t{task}", w3_states) for task in range(100)]
        real, fs_writer._run_batch = fs_writer._run_batch, _answer_all
        try:
            _, noop_loop, _ = await _saves_cpu(store, runs)
        finally:
            fs_writer._run_batch = real
        await store.close()
        m = 5_000
        print(
            f"threads #{rep + 1}: W1 NORMAL per save: forkpoint {wall / n * 1e6:.0f} µs wall, "
            f"loop thread {loop_cpu / n * 1e6:.0f} µs CPU, writer thread "
            f"{writer_cpu / n * 1e6:.0f} µs CPU | raw {raw_wall / n * 1e6:.0f} µs wall, "
            f"{raw_cpu / n * 1e6:.0f} µs CPU || W3 FULL per save: {w3_wall / m * 1e6:.0f} µs wall, "
            f"loop {w3_loop / m * 1e6:.0f} µs CPU, writer {w3_writer / m * 1e6:.0f} µs CPU; "
            f"loop with a writer doing nothing {noop_loop / m * 1e6:.0f} µs CPU"
        )


SECTIONS: dict[str, Callable[[str], Awaitable[None]]] = {
    "threads": section_threads,
    "hop": section_hop,
    "encode": section_encode,
    "load": section_load,
    "list": section_list,
    "reads": section_reads,
    "delta": section_delta,
}


async def _main(names: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="forkpoint-profile-") as tmp:
        for name in names:
            await SECTIONS[name](tmp)


def main(argv: list[str] | None = None) -> int:
    names = (sys.argv[1:] if argv is None else argv) or list(SECTIONS)
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        print(f"unknown sections {unknown}; choose from {list(SECTIONS)}", file=sys.stderr)
        return 2
    asyncio.run(_main(names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
