"""bench/RESULTS.md: the table of medians and per-repetition ratios, versions, machine."""

# ruff: noqa: RUF001 - ratios are printed with the multiplication sign

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from . import lg
from . import runner as runner_bench
from .workloads import (
    FP,
    FP_KEEP,
    FP_NORMAL,
    FP_UNVERSIONED,
    HOP,
    LG,
    RAW_AIO_FULL,
    RAW_AIO_NORMAL,
    RAW_FULL,
    RAW_GROUP_FULL,
    RAW_GROUP_NORMAL,
    RAW_NORMAL,
    Samples,
)

__all__ = ["keep_foreign_sections", "render"]

_LABEL = {
    FP: "forkpoint (defaults: FULL)",
    FP_NORMAL: 'forkpoint durability="normal"',
    FP_KEEP: "forkpoint keep_last (defaults + policy)",
    LG: "LangGraph AsyncSqliteSaver",
    RAW_FULL: "raw sqlite3, FULL",
    RAW_NORMAL: "raw sqlite3, NORMAL",
    RAW_GROUP_FULL: "raw sqlite3, FULL, one transaction per 100 saves",
    RAW_GROUP_NORMAL: "raw sqlite3, NORMAL, one transaction per 100 saves",
    RAW_AIO_FULL: "raw sqlite3, FULL, one worker-thread call per operation",
    RAW_AIO_NORMAL: "raw sqlite3, NORMAL, one worker-thread call per operation",
    HOP: "worker-thread round trip doing nothing",
    FP_UNVERSIONED: "forkpoint load decoding as before state versions",
}


@dataclass(frozen=True)
class Check:
    """ratio (forkpoint ÷ other) must be ≥ or ≤ a bound."""

    other: str
    op: str  # ">=" or "<="
    bound: float
    text: str

    def ok(self, ratio: float) -> bool:
        return ratio >= self.bound if self.op == ">=" else ratio <= self.bound


@dataclass(frozen=True)
class Row:
    workload: str
    metric: str
    contender: str
    raw: str | None = None  # the raw column compared with
    checks: tuple[Check, ...] = ()


_ROWS = [
    Row(
        "W1",
        "ckpt/s",
        FP,
        RAW_FULL,
        (Check(LG, ">=", 2, "≥ 2×"), Check(RAW_FULL, ">=", 0.6, "≥ 0.6×")),
    ),
    Row(
        "W1",
        "ckpt/s",
        FP_NORMAL,
        RAW_NORMAL,
        (Check(LG, ">=", 4, "≥ 4×"), Check(RAW_NORMAL, ">=", 0.33, "≥ 0.33×")),
    ),
    Row("W1", "ckpt/s", LG),
    Row("W1", "ckpt/s", RAW_FULL),
    Row("W1", "ckpt/s", RAW_NORMAL),
    Row("W1", "ckpt/s", RAW_AIO_FULL),
    Row("W1", "ckpt/s", RAW_AIO_NORMAL),
    Row("W1", "ckpt/s", FP, RAW_AIO_FULL),
    Row("W1", "ckpt/s", FP_NORMAL, RAW_AIO_NORMAL),
    Row(
        "W2",
        "ckpt/s",
        FP,
        RAW_FULL,
        (Check(LG, ">=", 1.5, "≥ 1.5×"), Check(RAW_FULL, ">=", 0.7, "≥ 0.7×")),
    ),
    Row("W2", "ckpt/s", FP_NORMAL, RAW_NORMAL),
    Row("W2", "ckpt/s", LG),
    Row("W2", "ckpt/s", RAW_FULL),
    Row("W2", "ckpt/s", RAW_NORMAL),
    Row(
        "W3",
        "ckpt/s",
        FP,
        RAW_NORMAL,
        (Check(LG, ">=", 15, "≥ 15×"), Check(RAW_NORMAL, ">=", 1.0, "≥ 1.0× raw NORMAL")),
    ),
    Row("W3", "ckpt/s", FP_NORMAL, RAW_NORMAL),
    Row("W3", "ckpt/s", LG),
    Row("W3", "ckpt/s", RAW_FULL),
    Row("W3", "ckpt/s", RAW_NORMAL),
    Row("W3", "ckpt/s", RAW_GROUP_FULL),
    Row("W3", "ckpt/s", RAW_GROUP_NORMAL),
    Row("W3", "ckpt/s", FP, RAW_GROUP_FULL),
    Row(
        "W4",
        "median µs",
        FP,
        RAW_FULL,
        (Check(LG, "<=", 1 / 3, "≥ 3× faster"), Check(RAW_FULL, "<=", 4, "≤ 4× raw")),
    ),
    Row("W4", "median µs", LG),
    Row("W4", "median µs", RAW_FULL),
    Row("W4", "median µs", RAW_AIO_FULL, RAW_FULL),
    Row("W4", "median µs", HOP, RAW_FULL),
    Row("W4", "median µs", FP, RAW_AIO_FULL),
    # A current-version row pays nothing for versions: the same load, decoded as before them.
    Row(
        "W4",
        "median µs",
        FP,
        FP_UNVERSIONED,
        (Check(FP_UNVERSIONED, "<=", 1.05, "≤ 1.05× the load before state versions"),),
    ),
    Row("W4", "p99 µs", FP, RAW_FULL),
    Row("W4", "p99 µs", LG),
    Row("W4", "p99 µs", RAW_FULL),
    Row(
        "W5",
        "s",
        FP,
        RAW_FULL,
        (Check(LG, "<=", 1 / 50, "≥ 50× faster"), Check(RAW_FULL, "<=", 2, "≤ 2× raw")),
    ),
    Row("W5", "s", LG),
    Row("W5", "s", RAW_FULL),
    Row("W5", "peak MiB", FP, RAW_FULL, (Check(LG, "<=", 0.1, "≤ 1/10 of its memory"),)),
    Row("W5", "peak MiB", LG),
    Row("W5", "peak MiB", RAW_FULL),
    Row("W6", "s", FP, RAW_FULL, (Check(RAW_FULL, "<=", 1.5, "≤ 1.5× raw INSERT…SELECT"),)),
    Row("W6", "s", LG),
    Row("W6", "s", RAW_FULL),
    Row(
        "W7",
        "bytes/ckpt",
        FP,
        RAW_FULL,
        (Check(LG, "<=", 0.8, "≤ 0.8×"), Check(RAW_FULL, "<=", 1.1, "≤ 1.1×")),
    ),
    Row("W7", "bytes/ckpt", LG),
    Row("W7", "bytes/ckpt", RAW_FULL),
    Row("W8", "db/state", FP, RAW_FULL),
    Row("W8", "db/state", LG),
    Row("W8", "db/state", RAW_FULL),
]

_HIGHER_IS_BETTER = {"ckpt/s"}


def ratio(samples: Samples, workload: str, metric: str, a: str, b: str) -> float | None:
    """Median over repetitions of a's value ÷ b's value in the same repetition."""
    va, vb = samples.get(workload, metric, a), samples.get(workload, metric, b)
    per_rep = [va[r] / vb[r] for r in va if vb.get(r)]
    return statistics.median(per_rep) if per_rep else None


def _median(values: dict[int, float]) -> float | None:
    return statistics.median(values.values()) if values else None


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _ratio_text(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric in _HIGHER_IS_BETTER or value == 0:
        return f"{value:.2f}×"
    if metric in ("median µs", "p99 µs", "s"):
        speed = f"{1 / value:.3g}× faster" if value <= 1 else f"{value:.3g}× slower"
        return f"{value:.3g}× ({speed})"
    return f"{value:.3g}×"


def _table(samples: Samples) -> list[str]:
    out = [
        "| workload | contender | median | ratio vs LangGraph | ratio vs raw | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in _ROWS:
        values = samples.get(row.workload, row.metric, row.contender)
        med = _median(values)
        if med is None:
            if row.contender == LG and row.workload == "W6" and LG not in samples.skipped:
                out.append(f"| W6 | {_LABEL[LG]} | has no thread copy (see notes) | | | | |")
            continue
        # The hop and raw-through-aiosqlite rows are compared with raw as well: they are floors.
        is_fp = row.contender in (FP, FP_NORMAL, FP_KEEP, HOP, RAW_AIO_FULL)
        # A raw row's ratio vs LangGraph is the ceiling: what any checkpointer doing the same
        # durable work from Python could reach.
        vs_lg = (
            ratio(samples, row.workload, row.metric, row.contender, LG)
            if row.contender != LG
            else None
        )
        vs_raw = (
            ratio(samples, row.workload, row.metric, row.contender, row.raw)
            if is_fp and row.raw
            else None
        )
        raw_text = _ratio_text(vs_raw, row.metric)
        if vs_raw is not None and row.raw:
            raw_text += f" of {_LABEL[row.raw].removeprefix('raw sqlite3, ')}"
        targets, met = [], []
        for check in row.checks:
            got = vs_lg if check.other == LG else vs_raw
            who = "LG" if check.other == LG else ("raw" if check.other.startswith("raw") else "")
            targets.append(f"{who} {check.text}".strip())
            met.append("n/a" if got is None else ("yes" if check.ok(got) else "**no**"))
        out.append(
            f"| {row.workload} | {_LABEL[row.contender]} | {_num(med)} {row.metric} "
            f"| {_ratio_text(vs_lg, row.metric)} | {raw_text} | {'; '.join(targets)} "
            f"| {'; '.join(met)} |"
        )
    return out


def _retention(samples: Samples, keep_last: int) -> list[str]:
    out = ["| figure | value | target |", "|---|---|---|"]
    cost = ratio(samples, "W1", "ckpt/s", FP_KEEP, FP)
    if cost is not None:
        med = _median(samples.get("W1", "ckpt/s", FP_KEEP)) or 0
        out.append(
            f"| W1 save throughput with `keep_last={keep_last}` | {_num(med)} ckpt/s, "
            f"{cost:.2f}× of forkpoint defaults | (shown, no target) |"
        )
    before = _median(samples.get("R", "bytes before", FP))
    after = _median(samples.get("R", "bytes after", FP))
    removed = _median(samples.get("R", "removed", FP))
    if before and after is not None and removed is not None:
        prune_s = _median(samples.get("R", "prune s", FP)) or 0
        vac_s = _median(samples.get("R", "vacuum s", FP)) or 0
        out.append(
            f"| prune(keep_last={keep_last}) of W1's thread + vacuum() | "
            f"{before / 1e6:.2f} MB → {after / 1e6:.3f} MB ({1 - after / before:.1%} smaller; "
            f"{removed:,.0f} checkpoints removed; prune {prune_s * 1e3:.0f} ms, vacuum "
            f"{vac_s * 1e3:.0f} ms) | file shrinks by the pruned fraction |"
        )
    w8 = _median(samples.get("W8", "db/state", FP))
    if w8 is not None:
        out.append(f"| W8 database ÷ final state JSON (forkpoint defaults) | {w8:.1f}× | ≤ 5× |")
    w8_load = ratio_pair(samples, "W8", "load µs", "snapshot load µs")
    if w8_load is not None:
        med = _median(samples.get("W8", "load µs", FP)) or 0
        out.append(
            f"| W8 `load` of the latest step ÷ `load` of a full-snapshot row of the same state "
            f"| {w8_load:.2f}× ({_num(med)} µs) | ≤ 2× |"
        )
    return out


def ratio_pair(samples: Samples, workload: str, metric_a: str, metric_b: str) -> float | None:
    """Median over repetitions of forkpoint's metric_a ÷ metric_b."""
    va, vb = samples.get(workload, metric_a, FP), samples.get(workload, metric_b, FP)
    per_rep = [va[r] / vb[r] for r in va if vb.get(r)]
    return statistics.median(per_rep) if per_rep else None


def _lgsaver_section(samples: Samples, sizes: Any) -> list[str]:
    from . import lgsaver  # imports LangGraph itself: only when it ran

    return lgsaver.section(samples, sizes)


def _sections(text: str) -> list[tuple[str, str]]:
    """``(heading, text)`` of each ``## `` section; the text before the first has heading ''."""
    parts: list[tuple[str, str]] = []
    heading, lines = "", list[str]()
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            parts.append((heading, "".join(lines)))
            heading, lines = line.strip(), []
        lines.append(line)
    parts.append((heading, "".join(lines)))
    return parts


def keep_foreign_sections(old: str, new: str) -> str:
    """``new``, with the ``## `` sections of ``old`` that ``new`` does not have, in their places.

    Other tools (``bench.cli``, a run of the LangGraph graphs alone) write
    their own sections of RESULTS.md; a new run replaces only the sections it
    writes. A kept section stays after the section it followed in ``old``.
    """
    new_parts = _sections(new)
    ours = {heading for heading, _ in new_parts}
    following: dict[str, list[str]] = {}
    anchor = ""
    for heading, body in _sections(old):
        if heading in ours:
            anchor = heading
        elif heading:
            following.setdefault(anchor, []).append(body)
    if not following:
        return new
    chunks: list[str] = []
    for heading, body in new_parts:
        chunks += [body, *following.pop(heading, [])]
    return "\n\n".join(chunk.rstrip("\n") for chunk in chunks if chunk.strip()) + "\n"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - read-only, fixed arguments
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def render(
    samples: Samples,
    *,
    command: str,
    reps: int,
    keep_last: int,
    quick: bool,
    elapsed: float,
    started: datetime,
    lg_sizes: Any = None,
) -> str:
    lines = [
        "# forkpoint benchmark results"
        + (" (quick smoke run: tiny sizes, not a measurement)" if quick else ""),
        "",
        f"Generated by `{command}` on {started.strftime('%Y-%m-%d %H:%M UTC')} "
        f"in {elapsed:.0f} s; {reps} repetition(s), contenders alternating in rotated order "
        "within each repetition. *median* is the median over repetitions; a *ratio* is "
        "forkpoint ÷ contender, computed within each repetition, then the median of those "
        "(times, latencies and bytes: lower is better; ckpt/s: higher is better).",
        "",
        *_table(samples),
        "",
        "## Retention and storage",
        "",
        *_retention(samples, keep_last),
        "",
        *runner_bench.section(samples, runner_bench.seconds(quick)),
        *(_lgsaver_section(samples, lg_sizes) if lg_sizes is not None else []),
        "## Notes",
        "",
        *[f"- {note}" for note in samples.notes],
        "- W1/W2/W3: one thread (W3: 100 asyncio tasks, one thread each, one checkpointer) of "
        "sequential saves; inputs (checkpoint objects / dicts) are built before the clock starts. "
        "Raw: one `BEGIN IMMEDIATE` … `COMMIT` per save (insert the checkpoint, upsert the thread "
        "row), `model_dump_json` every save, no asyncio; W3 raw runs the same 5,000 saves one "
        "after another, and *one transaction per 100 saves* runs each round of the 100 tasks' "
        "saves as one transaction: the ceiling for group commit, with no event loop and no "
        "checks.",
        "- W4: latency of `load` (LangGraph: `aget_tuple`, raw: select the latest row and "
        "`model_validate_json`) of a 10,000-step ~1 KB thread, each call timed; each "
        "contender's loads run in 10 slices that take turns with the other contenders', so "
        "a burst of other work on the machine falls on all of them alike. W5: "
        "`list_checkpoints` (LangGraph: `alist`, raw: `fetchall` of the metadata columns with "
        "time and metadata JSON decoded) of that thread; peak memory by `tracemalloc` in a "
        "separate pass of repetition 1. *worker-thread round trip doing nothing* is one "
        "call to forkpoint's reader thread that runs nothing: the floor of any read through a "
        "worker thread. *One worker-thread call per operation* (W1, W4) runs raw's own save or "
        "load function whole on a worker thread, as forkpoint runs its own: the ceiling for any "
        "checkpointer that does its SQLite I/O off the event loop.",
        "- W6: `fork` at the last step of a 1,000 × ~10 KB thread; raw: one `INSERT … SELECT` "
        "transaction at FULL. W7: file size after W1 with the WAL checkpointed (TRUNCATE), ÷ saves. "
        "W8: file size ÷ final state JSON after 1,000 saves of a state growing by one ~400-byte "
        "message per step.",
        "- A raw row's *ratio vs LangGraph* is the ceiling for that workload: what any "
        "checkpointer doing the same durable work from Python (one transaction per save at that "
        "durability) reaches against LangGraph in the same repetition.",
        "- LangGraph's checkpoint channel `messages` holds the state as plain dicts, the cheapest "
        "values for its serializer, so its figures are a best case.",
        "",
        "## Environment",
        "",
        f"- python {platform.python_version()} ({sys.implementation.name}), "
        f"SQLite {sqlite3.sqlite_version}, aiosqlite {_version('aiosqlite')}, "
        f"pydantic {_version('pydantic')} (pydantic-core {_version('pydantic-core')}), "
        f"langgraph-checkpoint-sqlite {lg.version()} "
        f"(langgraph-checkpoint {_version('langgraph-checkpoint')}), "
        f"forkpoint {_version('forkpoint')} at commit {_commit()}",
        f"- machine: {os.cpu_count()} cores, {_cpu_model()}, {platform.platform()}",
        f"- date: {started.isoformat(timespec='seconds')}",
        f"- command: `{command}`",
        "",
    ]
    return "\n".join(lines)
