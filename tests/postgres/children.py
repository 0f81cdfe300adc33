"""Writer processes of the PostgreSQL fault tests: ``python -m tests.postgres.children …``.

``saver URL SCHEMA NAME COUNT``: saves steps 0..COUNT-1 of thread NAME, and
after each one tries to append the next step of the shared thread ``shared``
(load the latest, save latest + 1), so four writers contend for it. Every save
is acknowledged on stdout (a JSON line) only after it returned; a
``StepConflict`` on the shared thread is counted (another writer won that
step); any other error is reported and ends the process.

``streamer URL SCHEMA NAME``: saves steps of thread NAME (a growing state,
stored as deltas) until killed, acknowledging each.

``forker URL SCHEMA SOURCE``: forks SOURCE at its latest step into ``fork-0``,
``fork-1``, … until killed, acknowledging each fork after it returned.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from forkpoint import Checkpoint, CheckpointError, GraphState, StepConflict
from forkpoint.postgres import PostgresCheckpointer
from tests.conftest import Counter, make_cp


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def saver(url: str, schema: str, name: str, count: str) -> None:
    lost = 0
    async with PostgresCheckpointer.open(url, Counter, schema=schema, pool_size=2) as cp:
        for step in range(int(count)):
            try:
                await cp.save(make_cp(name, step, n=step, node=name))
                emit(t=name, s=step)
                latest = await cp.load("shared")
                nxt = 0 if latest is None else latest.step + 1
                try:
                    await cp.save(make_cp("shared", nxt, n=nxt, node=name))
                    emit(t="shared", s=nxt, by=name)
                except StepConflict:
                    lost += 1
            except CheckpointError as exc:
                emit(error=type(exc).__name__, message=str(exc))
                return
    emit(done=True, lost=lost)


def grown(name: str, step: int) -> Checkpoint[Counter]:
    """A checkpoint whose log grows by one entry per step; every 8th entry is ~8 KB."""
    entries = [f"{name}-{i}-" + "x" * (60 if i % 8 else 8000) for i in range(step + 1)]
    state = GraphState[Counter](data=Counter(n=step, log=entries))
    return Checkpoint[Counter](thread_id=name, state=state, step=step, node=name)


async def streamer(url: str, schema: str, name: str) -> None:
    async with PostgresCheckpointer.open(url, Counter, schema=schema, pool_size=2) as cp:
        emit(ready=True)
        step = 0
        while True:
            await cp.save(grown(name, step))
            emit(t=name, s=step)
            step += 1


async def forker(url: str, schema: str, source: str) -> None:
    async with PostgresCheckpointer.open(url, Counter, schema=schema, pool_size=2) as cp:
        info = await cp.thread_info(source)
        assert info is not None
        emit(ready=True)
        i = 0
        while True:
            await cp.fork(source, info.latest_step, new_thread_id=f"fork-{i}")
            emit(fork=f"fork-{i}")
            i += 1


MODES: dict[str, Any] = {"saver": saver, "streamer": streamer, "forker": forker}

if __name__ == "__main__":
    asyncio.run(MODES[sys.argv[1]](*sys.argv[2:]))
