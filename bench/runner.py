# ruff: noqa: RUF001, RUF002 - ratios are printed with the multiplication sign

"""The runner's figure: three fan-out branches that each wait 1 s, concurrent vs one at a time.

Each branch is ``await asyncio.sleep(seconds)`` (an I/O-bound node: an LLM or
HTTP call), on a real SQLite file with forkpoint's defaults, so the figure is
the branches' wait plus the runner's own cost (six checkpoints). The row
reports the concurrent run's wall time and its ratio to the sequential run
(``max_concurrency=1``) in the same repetition; the target is ≤ 1.3 s, about
0.43× of sequential.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from forkpoint import Next, Runner, SqliteCheckpointer, StateSchema

from .workloads import Samples

__all__ = ["CONCURRENT", "SEQUENTIAL", "WORKLOAD", "run_branches", "seconds", "section"]

WORKLOAD = "R1"
CONCURRENT, SEQUENTIAL = "runner-concurrent", "runner-sequential"
TARGET_S = 1.3


def seconds(quick: bool) -> float:
    """How long each branch waits: 1 s, or 0.05 s in a quick smoke run."""
    return 0.05 if quick else 1.0


class _Fan(StateSchema):
    """The branches change nothing: the figure is the runner's and the waits'."""


def _runner(cp: SqliteCheckpointer[_Fan], seconds: float, concurrency: int) -> Runner[_Fan]:
    async def fan(state: _Fan) -> Next:
        return Next(["b1", "b2", "b3"])

    def branch(name: str) -> Any:
        async def wait(state: _Fan) -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return {}

        return wait

    nodes = {"fan": fan, **{n: branch(n) for n in ("b1", "b2", "b3")}}
    return Runner(cp, nodes=nodes, entry="fan", max_concurrency=concurrency)


async def run_branches(samples: Samples, workdir: Path, reps: int, seconds: float) -> None:
    """``reps`` repetitions of both contenders (alternating order); wall time in seconds."""
    for rep in range(reps):
        order = [(CONCURRENT, 3), (SEQUENTIAL, 1)]
        for name, concurrency in order if rep % 2 == 0 else order[::-1]:
            path = workdir / f"runner-{name}-{rep}.db"
            async with SqliteCheckpointer.open(path, _Fan) as cp:
                runner = _runner(cp, seconds, concurrency)
                started = time.perf_counter()
                result = await runner.run("t", _Fan())
                samples.add(WORKLOAD, "s", name, rep, time.perf_counter() - started)
            if not result.done or len(result.executed) != 4:
                raise RuntimeError(f"the branch run did not finish: {result}")


def section(samples: Samples, seconds: float = 1.0) -> list[str]:
    """The report's runner table (empty when the workload did not run)."""
    fast, slow = samples.get(WORKLOAD, "s", CONCURRENT), samples.get(WORKLOAD, "s", SEQUENTIAL)
    ratios = [fast[r] / slow[r] for r in fast if slow.get(r)]
    if not ratios:
        return []
    med_fast, med_slow = statistics.median(fast.values()), statistics.median(slow.values())
    ratio = statistics.median(ratios)
    return [
        "## Runner",
        "",
        "| figure | concurrent | sequential | ratio | target | met? |",
        "|---|---|---|---|---|---|",
        f"| {WORKLOAD}: three fan-out branches of `asyncio.sleep({seconds:g})` each, "
        "`max_concurrency=3` "
        f"vs `1`, SQLite defaults | {med_fast:.3f} s | {med_slow:.3f} s | {ratio:.2f}× "
        + (
            f"| ≤ {TARGET_S} s (≈ 0.43×) | {'yes' if med_fast <= TARGET_S else '**no**'} |"
            if seconds == 1.0
            else "| (1 s branches only) | n/a |"
        ),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.runner [--quick] [--reps N]``: only this row, printed as Markdown."""
    parser = argparse.ArgumentParser(prog="python -m bench.runner", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="0.05 s branches, 1 repetition")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    args = parser.parse_args(argv)
    samples = Samples()
    wait = seconds(args.quick)
    with tempfile.TemporaryDirectory(prefix="forkpoint-bench-runner-") as tmp:
        reps = 1 if args.quick else max(1, args.reps)
        asyncio.run(run_branches(samples, Path(tmp), reps, wait))
    print("\n".join(section(samples, wait)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
