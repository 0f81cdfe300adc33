"""``python -m bench.run [--quick] [--out PATH] [--reps N] [--no-langgraph] [--no-graphs]``.

Runs every workload for every contender in one process, alternating the
contenders repetition by repetition, and writes the report (bench/RESULTS.md
for a full run; a temporary file for ``--quick`` unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import lg
from . import runner as runner_bench
from .report import keep_foreign_sections, render
from .state import Sizes
from .workloads import Bench

DEFAULT_OUT = Path(__file__).with_name("RESULTS.md")


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def _run(bench: Bench, lg_sizes: Any) -> None:
    reps = bench.sizes.reps
    _log("building the read workloads' databases")
    await bench.build_read_fixtures()
    try:
        for rep in range(reps):
            for name, step in (
                ("W1+W7+retention", bench.run_w1),
                ("W2", bench.run_w2),
                ("W3", bench.run_w3),
                ("W4", bench.run_w4),
                ("W5", bench.run_w5),
                ("W6", bench.run_w6),
            ):
                _log(f"repetition {rep + 1}/{reps}: {name}")
                await step(rep)
    finally:
        await bench.close_readers()
    _log("W8")
    await bench.run_w8()
    _log(f"{runner_bench.WORKLOAD} (runner branches)")
    quick = bench.sizes == Sizes.quick()
    await runner_bench.run_branches(
        bench.samples, bench.dir, min(3, reps), runner_bench.seconds(quick)
    )
    if lg_sizes is not None:
        from . import lgsaver  # imports LangGraph itself: only when it is installed

        _log("G1-G3 (LangGraph graphs on ForkpointSaver and AsyncSqliteSaver)")
        await lgsaver.run(bench.samples, bench.dir, lg_sizes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, 1 repetition")
    parser.add_argument("--out", type=Path, help="where to write the report")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of a full run (default 7)")
    parser.add_argument(
        "--no-langgraph", action="store_true", help="skip the LangGraph contender even if installed"
    )
    parser.add_argument(
        "--no-graphs",
        action="store_true",
        help="skip the LangGraph graphs on ForkpointSaver (G1-G3) but keep LangGraph's contender "
        "in W1-W8; the report keeps that section as the previous run wrote it",
    )
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir)")
    args = parser.parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench.run", *argv_used])

    sizes = Sizes.quick() if args.quick else Sizes.full(max(1, args.reps))
    out: Path = args.out or (
        Path(tempfile.gettempdir()) / "forkpoint-bench" / "RESULTS-quick.md"
        if args.quick
        else DEFAULT_OUT
    )
    have_lg, why = lg.available()
    use_lg = have_lg and not args.no_langgraph
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    lg_sizes = _lg_sizes(args.quick, sizes.reps) if use_lg and not args.no_graphs else None
    with tempfile.TemporaryDirectory(prefix="forkpoint-bench-", dir=args.workdir) as tmp:
        bench = Bench(Path(tmp), sizes, langgraph=use_lg)
        if not use_lg:
            reason = "--no-langgraph was given" if have_lg else why
            bench.samples.notes.append(
                f"LangGraph contender skipped: {reason}. Install it with "
                "`pip install -e '.[bench]'` (or run `make bench`)."
            )
            _log(f"skipping LangGraph: {reason}")
        elif not _lg_copies():
            bench.samples.notes.append(
                f"W6: langgraph-checkpoint-sqlite {lg.version()}'s AsyncSqliteSaver has no "
                "`acopy_thread` (it inherits the base class's NotImplementedError): LangGraph "
                "cannot fork a thread, so W6 has no LangGraph figure."
            )
        asyncio.run(_run(bench, lg_sizes))
        text = render(
            bench.samples,
            command=command,
            reps=sizes.reps,
            keep_last=sizes.keep_last,
            quick=args.quick,
            elapsed=time.perf_counter() - t0,
            started=started,
            lg_sizes=lg_sizes,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.read_text(encoding="utf-8") if out.exists() else ""
    out.write_text(keep_foreign_sections(old, text), encoding="utf-8")
    _log(f"wrote {out}")
    print(text)
    return 0


def _lg_sizes(quick: bool, reps: int) -> Any:
    """The LangGraph-graph workloads' sizes: at most 3 repetitions (one takes about a minute)."""
    from . import lgsaver

    return lgsaver.Sizes.quick() if quick else lgsaver.Sizes.full(min(3, reps))


def _lg_copies() -> bool:
    from langgraph.checkpoint.base import BaseCheckpointSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    return AsyncSqliteSaver.acopy_thread is not BaseCheckpointSaver.acopy_thread


if __name__ == "__main__":
    raise SystemExit(main())
