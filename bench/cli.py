"""``python -m bench.cli [--quick] [--reps N] [--record LABEL] [--workdir DIR]``: the CLI's cost.

Builds two databases once per run, in a temporary directory:

* **deep**: one thread of 1,000 steps whose ~3 KB state grows a little every
  step, saved one step at a time so that older rows are stored as reverse
  deltas (the layout every real run of a growing state ends up with);
* **wide**: 10,000 threads x 100 small steps (built with concurrent
  ``restore_thread`` calls, which the group-commit writer batches).

Then times, as subprocesses (``python -m forkpoint.cli …``, output discarded):
``history``, ``export`` and ``check`` on *deep*, ``tree``, ``stats`` and
``threads --json`` on *wide*, and the bare start-up (``--help``). In process
it times the library's ``list_checkpoints`` of the deep thread and one raw
``sqlite3`` SELECT of the deep thread's rows (reading them once, the floor of
any command that has to look at every row).

Ratios, each taken within one repetition and then the median over repetitions:

* history ÷ (list_checkpoints + start-up): target ≤ 3;
* export, check ÷ (raw read + start-up): target ≤ 3;
* each command also *net* of its start-up (timed inside the subprocess once
  its modules are imported): history ÷ list_checkpoints, export and check ÷
  raw read and ÷ ``iter_states`` (the library's own pass over the thread's
  states, timed in process), the harder figures;
* tree, stats ÷ ``threads --json``: target ≤ 1.5. ``stats --bytes`` (stored
  bytes per thread, which only a pass over every checkpoint row can count) is
  shown with its ceiling: (``threads --json`` + one raw scan of those bytes)
  ÷ ``threads --json``.

``--record LABEL`` writes the table into ``bench/RESULTS.md`` under the
"CLI" section as subsection LABEL (replacing only an earlier subsection of
the same label; every other line of the file stays).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from forkpoint import Checkpoint, GraphState, JsonState, SqliteCheckpointer, ThreadInfo

__all__ = ["Sizes", "main"]

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## CLI"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
X = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Sizes:
    """Database sizes and repetitions: the issue's for a full run, tiny ones for ``--quick``."""

    deep_steps: int
    wide_threads: int
    wide_steps: int
    reps: int


FULL = Sizes(deep_steps=1000, wide_threads=10_000, wide_steps=100, reps=3)
QUICK = Sizes(deep_steps=120, wide_threads=300, wide_steps=10, reps=1)
DEEP_THREAD = "deep"


def _log(message: str) -> None:
    print(f"[bench.cli {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def deep_state(step: int) -> dict[str, object]:
    """About 2.5 KB of messages that stay, one that names the step, and a log that grows."""
    words = ("agent", "tool", "call", "result", "plan", "search", "answer", "review")
    messages = [
        {
            "role": ("user", "assistant")[i % 2],
            "content": " ".join(words[(i + j) % 8] for j in range(9)),
        }
        for i in range(30)
    ]
    messages.append({"role": "assistant", "content": f"step {step}"})
    return {"messages": messages, "log": "x" * step}


async def build_deep(path: Path, steps: int) -> None:
    """One thread saved step by step, so older rows become reverse deltas."""
    async with SqliteCheckpointer.open(path, JsonState, durability="normal") as cp:
        for step in range(steps):
            await cp.save(
                Checkpoint[JsonState](
                    thread_id=DEEP_THREAD,
                    state=GraphState[JsonState](data=JsonState(**deep_state(step))),
                    step=step,
                    node="__input__" if step == 0 else f"n{step % 7}",
                    queue=[] if step == steps - 1 else [(f"n{(step + 1) % 7}", 0)],
                    created_at=T0 + timedelta(seconds=step),
                    metadata={"source": "loop", "i": step},
                )
            )


def _wide_rows(index: int, steps: int) -> tuple[ThreadInfo, list[Checkpoint[JsonState]]]:
    thread_id = f"t{index:06d}"
    parent = f"t{index - 1:06d}" if index % 10 else None  # chains of forks, ten threads deep
    rows = [
        Checkpoint[JsonState](
            thread_id=thread_id,
            state=GraphState[JsonState](data=JsonState(n=step)),
            step=step,
            node="__input__" if step == 0 else "work",
            queue=[] if step == steps - 1 and index % 3 else [("work", 0)],
            created_at=T0 + timedelta(seconds=step),
            metadata={"interrupt": "before"} if step == steps - 1 and index % 3 == 1 else {},
        )
        for step in range(steps)
    ]
    info = ThreadInfo(
        thread_id=thread_id,
        created_at=T0,
        updated_at=T0 + timedelta(seconds=steps - 1),
        latest_step=steps - 1,
        checkpoint_count=steps,
        parent_thread_id=parent,
        parent_step=0 if parent else None,
    )
    return info, rows


async def build_wide(path: Path, threads: int, steps: int) -> None:
    """``threads`` threads of ``steps`` steps, restored 500 at a time (one batch each)."""
    async with SqliteCheckpointer.open(path, JsonState, durability="normal") as cp:
        for start in range(0, threads, 500):
            batch = [_wide_rows(i, steps) for i in range(start, min(threads, start + 500))]
            await asyncio.gather(*(cp.restore_thread(info, rows) for info, rows in batch))


_NET_MARK = "forkpoint-bench-net "
# The command run as `forkpoint` runs it, plus the seconds it took once its modules were imported
# (its cost net of the start-up), written last on stderr.
_NET = f"""
import sys, time
from forkpoint.cli import main
sys.argv = ["forkpoint", *sys.argv[1:]]
t = time.perf_counter()
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
sys.stdout.flush()
sys.stderr.write("{_NET_MARK}%r\\n" % (time.perf_counter() - t))
sys.exit(code)
"""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", _NET, *args]


def run_timed(argv: Sequence[str]) -> tuple[float, float]:
    """(wall seconds, seconds net of start-up) of one CLI subprocess; its output is discarded."""
    env = {**os.environ, "FORKPOINT_PROGRESS": "never"}
    t = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False
    )
    elapsed = time.perf_counter() - t
    err = done.stderr.decode()
    # `check` exits 1 when it finds problems; these databases are healthy, so any failure is real.
    if done.returncode != 0 or _NET_MARK not in err:
        raise SystemExit(f"{' '.join(argv[3:])} failed ({done.returncode}): {err}")
    return elapsed, float(err.rsplit(_NET_MARK, 1)[1])


async def _iter_states_seconds(path: Path) -> float:
    async with SqliteCheckpointer.open(path, JsonState, read_only=True) as cp:
        t = time.perf_counter()
        count = 0
        async for _ in cp.iter_states(DEEP_THREAD):
            count += 1
        elapsed = time.perf_counter() - t
    assert count, "the deep thread is empty"
    return elapsed


async def _list_checkpoints_seconds(path: Path) -> float:
    async with SqliteCheckpointer.open(path, JsonState, read_only=True) as cp:
        t = time.perf_counter()
        rows = await cp.list_checkpoints(DEEP_THREAD)
        elapsed = time.perf_counter() - t
    assert rows, "the deep thread is empty"
    return elapsed


def raw_read_seconds(path: Path) -> float:
    """One SELECT of every column of the deep thread's rows, fetched whole (stdlib sqlite3)."""
    t = time.perf_counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT * FROM checkpoints WHERE thread_id = ? ORDER BY step", (DEEP_THREAD,)
        ).fetchall()
    finally:
        conn.close()
    elapsed = time.perf_counter() - t
    assert rows, "the deep thread is empty"
    return elapsed


def raw_scan_seconds(path: Path) -> float:
    """What ``stats --bytes`` must read: every row's stored state size, grouped by thread.

    The same two statements ``storage_stats()`` runs (stdlib sqlite3): the
    floor of any per-thread byte count, which no thread record can replace.
    """
    t = time.perf_counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute(
            "SELECT thread_id, sum(length(CAST(state AS BLOB))) FROM checkpoints GROUP BY thread_id"
        ).fetchall()
        conn.execute(
            "SELECT t.thread_id, length(CAST(c.state AS BLOB)) FROM threads AS t "
            "JOIN checkpoints AS c ON c.thread_id = t.thread_id AND c.step = t.latest_step"
        ).fetchall()
    finally:
        conn.close()
    return time.perf_counter() - t


@dataclass
class Figures:
    """Seconds per measurement and repetition."""

    times: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, top: str, *bottom: str) -> float:
        """Median over repetitions of top ÷ sum(bottom)."""
        values = [
            self.times[top][rep] / sum(self.times[b][rep] for b in bottom)
            for rep in range(len(self.times[top]))
        ]
        return statistics.median(values)


def measure(deep: Path, wide: Path, reps: int) -> Figures:
    """Every measurement once per repetition, in the same order each time."""
    plan: list[tuple[str, Sequence[str] | None]] = [
        ("start-up", _cli("--help")),
        ("list_checkpoints", None),
        ("iter_states", None),
        ("raw read", None),
        ("history", _cli("history", DEEP_THREAD, "--db", str(deep))),
        ("export", _cli("export", DEEP_THREAD, "--db", str(deep))),
        ("check", _cli("check", "--db", str(deep))),
        ("threads --json", _cli("threads", "--json", "--db", str(wide))),
        ("tree", _cli("tree", "--db", str(wide))),
        ("stats", _cli("stats", "--db", str(wide))),
        ("stats --bytes", _cli("stats", "--bytes", "--db", str(wide))),
        ("raw byte scan", None),
    ]
    times: dict[str, list[float]] = {}
    run_timed(_cli("--help"))  # warm the file cache: the first start-up reads every module cold
    for rep in range(reps):
        for name, argv in plan:
            _log(f"repetition {rep + 1}/{reps}: {name}")
            if name == "list_checkpoints":
                value = asyncio.run(_list_checkpoints_seconds(deep))
            elif name == "iter_states":
                value = asyncio.run(_iter_states_seconds(deep))
            elif name == "raw read":
                value = raw_read_seconds(deep)
            elif name == "raw byte scan":
                value = raw_scan_seconds(wide)
            else:
                assert argv is not None
                value, net = run_timed(argv)
                times.setdefault(f"{name} (net)", []).append(net)
            times.setdefault(name, []).append(value)
    return Figures(times)


def _order(name: str) -> tuple[str, bool]:
    return name.removesuffix(" (net)"), name.endswith(" (net)")


def render(fig: Figures, sizes: Sizes, label: str, commit: str) -> str:
    """The markdown subsection for one run."""
    su = "start-up"
    rows = [
        (
            "history",
            "list_checkpoints + start-up",
            fig.ratio("history", "list_checkpoints", su),
            3.0,
        ),
        ("export", "raw read + start-up", fig.ratio("export", "raw read", su), 3.0),
        ("check", "raw read + start-up", fig.ratio("check", "raw read", su), 3.0),
        (
            "history, net of start-up",
            "list_checkpoints",
            fig.ratio("history (net)", "list_checkpoints"),
            None,
        ),
        ("export, net of start-up", "raw read", fig.ratio("export (net)", "raw read"), None),
        ("check, net of start-up", "raw read", fig.ratio("check (net)", "raw read"), None),
        ("export, net of start-up", "iter_states", fig.ratio("export (net)", "iter_states"), None),
        ("check, net of start-up", "iter_states", fig.ratio("check (net)", "iter_states"), None),
        ("iter_states (the library)", "raw read", fig.ratio("iter_states", "raw read"), None),
        ("tree", "threads --json", fig.ratio("tree", "threads --json"), 1.5),
        ("stats", "threads --json", fig.ratio("stats", "threads --json"), 1.5),
        (
            "tree, net of start-up",
            "threads --json, net",
            fig.ratio("tree (net)", "threads --json (net)"),
            None,
        ),
        (
            "stats, net of start-up",
            "threads --json, net",
            fig.ratio("stats (net)", "threads --json (net)"),
            None,
        ),
        ("stats --bytes", "threads --json", fig.ratio("stats --bytes", "threads --json"), None),
        (
            "ceiling of stats --bytes: threads --json + raw byte scan",
            "threads --json",
            fig.ratio("threads --json", "threads --json")
            + fig.ratio("raw byte scan", "threads --json"),
            None,
        ),
    ]
    lines = [
        f"### {label}",
        "",
        f"`python -m bench.cli` at commit {commit}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"deep: 1 thread {X} {sizes.deep_steps} steps (~3 KB growing state, reverse deltas); "
        f"wide: {sizes.wide_threads:,} threads {X} {sizes.wide_steps} steps; "
        f"median of {sizes.reps} repetition(s).",
        "",
        "| measurement | median seconds |",
        "|---|---|",
        *(f"| {name} | {fig.median(name):.3f} |" for name in sorted(fig.times, key=_order)),
        "",
        "| command | ÷ baseline | ratio | target | met? |",
        "|---|---|---|---|---|",
    ]
    for name, base, value, target in rows:
        met = "-" if target is None else ("yes" if value <= target else "**no**")
        shown = "-" if target is None else f"≤ {target:g}{X}"
        lines.append(f"| {name} | {base} | {value:.2f}{X} | {shown} | {met} |")
    return "\n".join(lines) + "\n"


def record(block: str, label: str, results: Path = RESULTS) -> None:
    """Put ``block`` into the CLI section of ``results``, replacing only subsection ``label``."""
    text = results.read_text(encoding="utf-8") if results.exists() else ""
    if SECTION not in text.splitlines():
        intro = (
            f"\n{SECTION}\n\nWritten by `python -m bench.cli --record LABEL` "
            "(see its docstring for what each figure measures).\n"
        )
        text = text.rstrip("\n") + "\n" + intro
    head, _, section = text.partition(f"\n{SECTION}\n")
    # The CLI section runs to the next level-2 heading (or the end of the file).
    match = re.search(r"^## ", section, flags=re.M)
    body, rest = (section[: match.start()], section[match.start() :]) if match else (section, "")
    parts = re.split(r"(?m)^(?=### )", body)
    kept = [p for p in parts if not p.startswith(f"### {label}\n")]
    body = "".join(kept).rstrip("\n") + "\n\n" + block
    results.write_text(f"{head}\n{SECTION}\n{body}" + ("\n" + rest if rest else ""), "utf-8")


def _commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, fixed arguments
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny databases, one repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--record", metavar="LABEL", help="write the table into bench/RESULTS.md")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.reps:
        sizes = Sizes(sizes.deep_steps, sizes.wide_threads, sizes.wide_steps, max(1, args.reps))
    with tempfile.TemporaryDirectory(prefix="forkpoint-bench-cli-", dir=args.workdir) as tmp:
        deep, wide = Path(tmp) / "deep.db", Path(tmp) / "wide.db"
        _log(f"building {deep.name}: 1 thread {X} {sizes.deep_steps} steps")
        asyncio.run(build_deep(deep, sizes.deep_steps))
        _log(f"building {wide.name}: {sizes.wide_threads} threads {X} {sizes.wide_steps} steps")
        t = time.perf_counter()
        asyncio.run(build_wide(wide, sizes.wide_threads, sizes.wide_steps))
        _log(f"built in {time.perf_counter() - t:.1f} s")
        figures = measure(deep, wide, sizes.reps)
    label = args.record or ("quick" if args.quick else "run")
    block = render(figures, sizes, label, _commit())
    print(block)
    if args.record:
        record(block, args.record)
        _log(f"recorded as {args.record!r} in {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
