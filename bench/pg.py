# ruff: noqa: RUF001 - ratios are printed with the multiplication sign
"""``python -m bench.pg [--quick] [--reps N] [--url URL] [--out PATH]``: the PostgreSQL section.

Contenders, alternating repetition by repetition in one process, each in a
database of its own on the server (created and dropped by the run):

* ``forkpoint``: ``PostgresCheckpointer`` with its defaults (``synchronous_commit=on``);
* ``langgraph``: ``AsyncPostgresSaver.from_conn_string(url)`` then ``setup()``,
  as LangGraph's documentation shows, with checkpoints built by LangGraph's
  own helpers (``bench.lg``); skipped, and said so, when not installed;
* ``raw-stmt``: raw asyncpg, a save as one statement (a CTE doing the step
  check, the thread upsert and the insert) — one round trip, one commit;
* ``raw-group``: raw asyncpg, 100 saves per transaction sent as one
  ``unnest`` statement (W3's group-commit ceiling).

Workloads (the issue's numbering): W1 sequential ~1 KB saves; W3 100 tasks
x 50 saves; W4 load the latest of 10,000 steps; W5 list 10,000 checkpoints
(time and peak Python memory); W6 fork 1,000 x 10 KB; W7 bytes per ~1 KB
checkpoint; W8 a state growing 400 B/step for 1,000 steps, bytes on disk ÷
the final state. Ratios are medians of per-repetition ratios: absolute rates
on a shared machine move between repetitions, ratios much less.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from forkpoint import Checkpoint, GraphState
from forkpoint.postgres import PostgresCheckpointer

from .lg import LangGraphStore
from .state import BenchState, fixed_states, growing_states, json_size

FP, LG, RAW, GROUP = "forkpoint", "langgraph", "raw-stmt", "raw-group"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_OUT = Path(__file__).with_name("RESULTS-pg.md")
SKIPPED = "bench.pg: the PostgreSQL section was skipped"

_RAW_DDL = """
CREATE TABLE threads (thread_id text COLLATE "C" PRIMARY KEY, created_at text NOT NULL,
    updated_at text NOT NULL, latest_step bigint NOT NULL, checkpoint_count bigint NOT NULL,
    metadata text NOT NULL DEFAULT '{}');
CREATE TABLE checkpoints (thread_id text COLLATE "C" NOT NULL, step bigint NOT NULL,
    node text NOT NULL, created_at text NOT NULL, queue text NOT NULL, metadata text NOT NULL,
    state text NOT NULL, PRIMARY KEY (thread_id, step));
"""
_RAW_SAVE = (
    "WITH t AS (INSERT INTO threads AS t (thread_id, created_at, updated_at, latest_step,"
    " checkpoint_count) VALUES ($1, $3, $3, $2, 1) ON CONFLICT (thread_id) DO UPDATE SET"
    " latest_step = $2, updated_at = $3, checkpoint_count = t.checkpoint_count + 1"
    " WHERE t.latest_step < $2 RETURNING 1)"
    " INSERT INTO checkpoints (thread_id, step, node, created_at, queue, metadata, state)"
    " SELECT $1, $2, 'node', $3, '[]', '{}', $4 FROM t"
)
_RAW_GROUP = (
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[])"
    " AS v(thread_id, step, now, state)),"
    " t AS (INSERT INTO threads AS t (thread_id, created_at, updated_at, latest_step,"
    " checkpoint_count) SELECT thread_id, now, now, step, 1 FROM v ORDER BY thread_id"
    " ON CONFLICT (thread_id) DO UPDATE SET latest_step = EXCLUDED.latest_step,"
    " updated_at = EXCLUDED.updated_at, checkpoint_count = t.checkpoint_count + 1"
    " WHERE t.latest_step < EXCLUDED.latest_step RETURNING thread_id)"
    " INSERT INTO checkpoints (thread_id, step, node, created_at, queue, metadata, state)"
    " SELECT v.thread_id, v.step, 'node', v.now, '[]', '{}', v.state FROM v JOIN t USING (thread_id)"
)
_RAW_LATEST = (
    "SELECT step, node, created_at, queue, metadata, state FROM checkpoints"
    " WHERE thread_id = $1 ORDER BY step DESC LIMIT 1"
)
_RAW_LIST = (
    "SELECT step, created_at, node, metadata FROM checkpoints WHERE thread_id = $1 ORDER BY step"
)
_RAW_FORK = (
    "INSERT INTO checkpoints (thread_id, step, node, created_at, queue, metadata, state)"
    " SELECT $1, step, node, created_at, queue, metadata, state FROM checkpoints"
    " WHERE thread_id = $2 AND step <= $3"
)
_SIZE = (
    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class AS c"
    " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg_toast%'"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@dataclass(frozen=True)
class Sizes:
    reps: int
    w1: int
    w3_tasks: int
    w3_saves: int
    w45: int
    w4_loads: int
    w6: int
    w8: int

    @classmethod
    def full(cls, reps: int) -> Sizes:
        return cls(reps, 2000, 100, 50, 10_000, 1000, 1000, 1000)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(1, 60, 10, 5, 200, 50, 40, 40)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Nothing to reset: the raw contender changes no session state."""


class Raw:
    """The raw asyncpg contender: forkpoint's table shape without forkpoint."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str) -> Raw:
        # No reset query on release (asyncpg's default costs a round trip per call): the
        # ceiling is raw asyncpg used well, as forkpoint's own pool is.
        pool = await asyncpg.create_pool(url, min_size=1, max_size=10, reset=_no_reset)
        await pool.execute(_RAW_DDL)
        return cls(pool)

    async def save(self, thread_id: str, step: int, state: BenchState) -> None:
        await self.pool.execute(_RAW_SAVE, thread_id, step, _now(), state.model_dump_json())

    async def save_group(self, items: list[tuple[str, int, BenchState]]) -> None:
        now = _now()
        await self.pool.execute(
            _RAW_GROUP,
            [t for t, _, _ in items],
            [s for _, s, _ in items],
            [now] * len(items),
            [st.model_dump_json() for _, _, st in items],
        )

    async def load(self, thread_id: str) -> Any:
        row = await self.pool.fetchrow(_RAW_LATEST, thread_id)
        return BenchState.model_validate_json(row["state"])

    async def list(self, thread_id: str) -> int:
        rows = await self.pool.fetch(_RAW_LIST, thread_id)
        return len([(r[0], r[1], r[2], json.loads(r[3])) for r in rows])

    async def fork(self, thread_id: str, at: int, target: str) -> None:
        await self.pool.execute(_RAW_FORK, target, thread_id, at)

    async def close(self) -> None:
        await self.pool.close()


class Fp:
    """forkpoint's PostgresCheckpointer."""

    def __init__(self, cp: PostgresCheckpointer[BenchState]) -> None:
        self.cp = cp

    @classmethod
    async def open(cls, url: str) -> Fp:
        return cls(await PostgresCheckpointer.open(url, BenchState))

    @staticmethod
    def prepare(thread_id: str, states: list[BenchState], first: int = 0) -> list[Any]:
        return [
            Checkpoint[BenchState](
                thread_id=thread_id, state=GraphState[BenchState](data=s), step=first + i, node="n"
            )
            for i, s in enumerate(states)
        ]

    async def save(self, item: Any) -> None:
        await self.cp.save(item)

    async def load(self, thread_id: str) -> Any:
        return await self.cp.load(thread_id)

    async def list(self, thread_id: str) -> int:
        return len(await self.cp.list_checkpoints(thread_id))

    async def fork(self, thread_id: str, at: int, target: str) -> None:
        await self.cp.fork(thread_id, at, new_thread_id=target)

    async def close(self) -> None:
        await self.cp.close()


class Lg(LangGraphStore):
    """``AsyncPostgresSaver.from_conn_string(url)`` and ``setup()``, as documented."""

    @classmethod
    async def open(cls, path: str) -> Lg:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        stack = contextlib.AsyncExitStack()
        saver = await stack.enter_async_context(AsyncPostgresSaver.from_conn_string(path))
        await saver.setup()
        return cls(saver, stack)


@dataclass
class Results:
    values: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, workload: str, metric: str, who: str, value: float) -> None:
        self.values.setdefault((workload, metric, who), []).append(value)

    def ratio(self, workload: str, metric: str, a: str, b: str) -> float | None:
        """Median over repetitions of a / b."""
        xs, ys = self.values.get((workload, metric, a)), self.values.get((workload, metric, b))
        if not xs or not ys:
            return None
        return statistics.median(x / y for x, y in zip(xs, ys, strict=False) if y)


async def _timed(work: Awaitable[object]) -> float:
    """Seconds to await ``work`` (a coroutine not yet started), after a collection."""
    gc.collect()
    t0 = time.perf_counter()
    await work
    return time.perf_counter() - t0


async def _sequential(who: str, store: Any, tid: str, states: list[BenchState]) -> None:
    """Save ``states`` as steps 0.. of ``tid``, one after another."""
    if who == RAW:
        for i, s in enumerate(states):
            await store.save(tid, i, s)
    else:
        for item in store.prepare(tid, states):
            await store.save(item)


async def _prepared(store: Any, items: list[Any]) -> None:
    for item in items:
        await store.save(item)


async def _concurrent(who: str, store: Any, tids: list[str], states: list[BenchState]) -> None:
    """W3: one task per thread id, each saving ``states``; for GROUP, one statement per round."""
    if who == GROUP:
        for i, s in enumerate(states):
            await store.save_group([(t, i, s) for t in tids])
    elif who == RAW:
        await asyncio.gather(*(_sequential(RAW, store, t, states) for t in tids))
    else:
        prepared = [store.prepare(t, states) for t in tids]  # built before the clock starts
        await asyncio.gather(*(_prepared(store, items) for items in prepared))


class Run:
    """Every contender in its own database; the workloads, one repetition at a time."""

    def __init__(self, url: str, sizes: Sizes, langgraph: bool) -> None:
        self.url = url
        self.sizes = sizes
        self.names = [FP, *([LG] if langgraph else []), RAW]
        self.dbs: dict[str, str] = {}
        self.stores: dict[str, Any] = {}
        self.results = Results()
        self.tag = f"fpbench_{os.getpid()}_{secrets.token_hex(3)}"

    async def admin(self, sql: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def fresh(self, who: str, label: str) -> Any:
        name = f"{self.tag}_{label}_{who.replace('-', '_')}"
        await self.admin(f'CREATE DATABASE "{name}"')
        self.dbs[f"{who}/{label}"] = name
        url = _with_db(self.url, name)
        return await {FP: Fp.open, LG: Lg.open, RAW: Raw.open}[who](url)

    async def db_sizes(self, who: str, label: str) -> tuple[int, int]:
        """Bytes of the database's tables (heap, TOAST, indexes): after VACUUM, after VACUUM FULL.

        A plain VACUUM makes dead rows' space reusable but seldom gives it back;
        VACUUM FULL rewrites the tables, so the second figure is the live data.
        """
        conn = await asyncpg.connect(_with_db(self.url, self.dbs[f"{who}/{label}"]))
        try:
            await conn.execute("VACUUM")
            after_vacuum = int(await conn.fetchval(_SIZE))
            await conn.execute("VACUUM FULL")
            return after_vacuum, int(await conn.fetchval(_SIZE))
        finally:
            await conn.close()

    async def analyze(self, who: str, label: str) -> None:
        conn = await asyncpg.connect(_with_db(self.url, self.dbs[f"{who}/{label}"]))
        try:
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    async def drop_all(self) -> None:
        for store in self.stores.values():
            await store.close()
        for name in self.dbs.values():
            await self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def order(self, names: list[str], rep: int) -> list[str]:
        return names[rep % len(names) :] + names[: rep % len(names)]

    async def setup(self) -> None:
        states = fixed_states(self.sizes.w45, 1000)
        big = fixed_states(self.sizes.w6, 10_000, seed=3)
        for who in self.names:
            store = self.stores[who] = await self.fresh(who, "main")
            await _sequential(who, store, "long", states)
            await _sequential(who, store, "fork-src", big)
            # Fresh tables have no planner statistics until autovacuum runs; without them
            # LangGraph's listing query ran for minutes. Every contender gets them now.
            await self.analyze(who, "main")

    async def w1(self, rep: int) -> None:
        states = fixed_states(self.sizes.w1, 1000, seed=rep + 10)
        for who in self.order(self.names, rep):
            store, tid = self.stores[who], f"w1-{rep}"
            work = (
                _sequential(RAW, store, tid, states)
                if who == RAW
                else _prepared(store, store.prepare(tid, states))
            )
            self.results.add("W1", "saves/s", who, len(states) / await _timed(work))

    async def w3(self, rep: int) -> None:
        n, per = self.sizes.w3_tasks, self.sizes.w3_saves
        states = fixed_states(per, 1000, seed=rep + 20)
        for who in self.order([*self.names, GROUP], rep):
            store = self.stores[RAW if who == GROUP else who]
            tids = [f"w3-{rep}-{who}-{t}" for t in range(n)]
            seconds = await _timed(_concurrent(who, store, tids, states))
            self.results.add("W3", "saves/s", who, n * per / seconds)

    async def w4(self, rep: int) -> None:
        for who in self.order(self.names, rep):
            store = self.stores[who]
            for _ in range(20):
                await store.load("long")
            gc.collect()
            out = []
            for _ in range(self.sizes.w4_loads):
                t0 = time.perf_counter()
                await store.load("long")
                out.append(time.perf_counter() - t0)
            self.results.add("W4", "µs", who, statistics.median(out) * 1e6)

    async def w5(self, rep: int) -> None:
        for who in self.order(self.names, rep):
            store = self.stores[who]
            self.results.add("W5", "s", who, await _timed(store.list("long")))
            if rep == 0:
                gc.collect()
                tracemalloc.start()
                await store.list("long")
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                self.results.add("W5", "peak MiB", who, peak / 2**20)

    async def w6(self, rep: int) -> None:
        at = self.sizes.w6 - 1
        for who in self.order([FP, RAW], rep):
            store = self.stores[who]
            seconds = await _timed(store.fork("fork-src", at, f"fork-{rep}"))
            self.results.add("W6", "s", who, seconds)

    async def storage(self) -> None:
        """W7 (bytes per ~1 KB checkpoint) and W8 (growing state), each in fresh databases."""
        count = self.sizes.w1
        fixed = fixed_states(count, 1000, seed=99)
        growing = growing_states(self.sizes.w8)
        final = json_size(growing[-1])
        for who in self.names:
            for label, states in (("w7", fixed), ("w8", growing)):
                store = await self.fresh(who, label)
                try:
                    await _sequential(who, store, "t", states)
                finally:
                    await store.close()
                disk, live = await self.db_sizes(who, label)
                if label == "w7":
                    self.results.add("W7", "bytes/checkpoint", who, disk / count)
                    self.results.add("W7", "live bytes/checkpoint", who, live / count)
                else:
                    self.results.add("W8", "bytes ÷ final state", who, disk / final)
                    self.results.add("W8", "live bytes ÷ final state", who, live / final)


def report(run: Run, started: datetime, seconds: float, command: str) -> str:
    r, s = run.results, run.sizes
    lines = [
        "# forkpoint on PostgreSQL: benchmark results",
        "",
        f"`{command}` — {started:%Y-%m-%d %H:%M} UTC, {seconds:.0f} s, {s.reps} repetitions, "
        f"Python {sys.version.split()[0]}, asyncpg {asyncpg.__version__}.",
        "Contenders alternate repetition by repetition; ratios are medians of per-repetition ratios.",
        "",
        "| workload | forkpoint | vs LangGraph | vs raw |",
        "|---|---|---|---|",
    ]

    def fmt(x: float | None, unit: str = "×") -> str:
        return "–" if x is None else f"{x:.2f}{unit}"

    def med(w: str, m: str, who: str) -> float | None:
        xs = r.values.get((w, m, who))
        return statistics.median(xs) if xs else None

    rows = [
        ("W1 sequential ~1 KB saves", "W1", "saves/s", RAW, False),
        ("W3 100 tasks × 50 saves", "W3", "saves/s", GROUP, False),
        ("W4 load latest of 10,000 (median µs)", "W4", "µs", RAW, True),
        ("W5 list 10,000 (s)", "W5", "s", RAW, True),
        ("W5 list 10,000 (peak MiB)", "W5", "peak MiB", RAW, True),
        ("W6 fork 1,000 × 10 KB (s)", "W6", "s", RAW, True),
        ("W7 bytes per ~1 KB checkpoint, after VACUUM", "W7", "bytes/checkpoint", RAW, True),
        ("W7 the same, live (after VACUUM FULL)", "W7", "live bytes/checkpoint", RAW, True),
        ("W8 bytes on disk ÷ final state, after VACUUM", "W8", "bytes ÷ final state", RAW, True),
        ("W8 the same, live (after VACUUM FULL)", "W8", "live bytes ÷ final state", RAW, True),
    ]
    for title, w, m, raw, lower_better in rows:
        vs_lg = r.ratio(w, m, FP, LG)
        vs_raw = r.ratio(w, m, FP, raw)
        own = med(w, m, FP)
        lg_text = fmt(vs_lg) + (" (of its value)" if lower_better and vs_lg is not None else "")
        raw_text = fmt(vs_raw) + (" (of its value)" if lower_better and vs_raw is not None else "")
        lines.append(f"| {title} | {fmt(own, '')} | {lg_text} | {raw_text} |")
    lines += ["", "Ceilings measured in the same run:", ""]
    for w, m, a, b in [
        ("W1", "saves/s", RAW, LG),
        ("W3", "saves/s", RAW, LG),
        ("W3", "saves/s", GROUP, LG),
        ("W4", "µs", LG, RAW),
        ("W5", "s", LG, RAW),
        ("W7", "bytes/checkpoint", RAW, LG),
        ("W7", "live bytes/checkpoint", RAW, LG),
        ("W8", "bytes ÷ final state", RAW, LG),
        ("W8", "live bytes ÷ final state", RAW, LG),
    ]:
        lines.append(f"- {w} {m}: {a} ÷ {b} = {fmt(r.ratio(w, m, a, b))}")
    lines += ["", "Every median, per contender:", ""]
    for (w, m, who), xs in sorted(r.values.items()):
        lines.append(f"- {w} {m} {who}: {statistics.median(xs):.4g} ({len(xs)} samples)")
    lines += ["", *r.notes]
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace, command: str) -> str:
    sizes = Sizes.quick() if args.quick else Sizes.full(max(1, args.reps))
    use_lg, why = not args.no_langgraph, "--no-langgraph was given"
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver  # noqa: F401
    except ImportError as exc:
        use_lg, why = False, f"langgraph-checkpoint-postgres is not installed ({exc})"
    run = Run(args.url, sizes, use_lg)
    if not use_lg:
        run.results.notes.append(f"LangGraph's contender was skipped: {why}.")
    started, t0 = datetime.now(UTC), time.perf_counter()
    try:
        await run.admin("SELECT 1")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # No server here: the section is skipped, saying why, instead of failing `make bench`.
        return f"{SKIPPED}: no server at {args.url}: {exc}"
    try:
        if not args.storage_only:
            print("[bench.pg] building the read fixtures", file=sys.stderr, flush=True)
            await run.setup()
            for rep in range(sizes.reps):
                for name, step in (
                    ("W1", run.w1),
                    ("W3", run.w3),
                    ("W4", run.w4),
                    ("W5", run.w5),
                    ("W6", run.w6),
                ):
                    print(
                        f"[bench.pg] repetition {rep + 1}/{sizes.reps}: {name}",
                        file=sys.stderr,
                        flush=True,
                    )
                    await step(rep)
        print("[bench.pg] W7, W8", file=sys.stderr, flush=True)
        await run.storage()
    finally:
        await run.drop_all()
    return report(run, started, time.perf_counter() - t0, command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 repetition")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--url", default=os.environ.get("FORKPOINT_TEST_POSTGRES") or DEFAULT_URL)
    parser.add_argument("--out", type=Path, help="where to write the report")
    parser.add_argument("--no-langgraph", action="store_true", help="skip LangGraph's contender")
    parser.add_argument("--storage-only", action="store_true", help="run W7 and W8 only")
    args = parser.parse_args(argv)
    command = " ".join(["python -m bench.pg", *(sys.argv[1:] if argv is None else argv)])
    text = asyncio.run(main_async(args, command))
    if text.startswith(SKIPPED):
        print(text, file=sys.stderr)  # the last results stay as they are
        return 0
    quick_out = Path(tempfile.gettempdir()) / "forkpoint-bench" / "RESULTS-pg-quick.md"
    out: Path = args.out or (quick_out if args.quick else DEFAULT_OUT)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
