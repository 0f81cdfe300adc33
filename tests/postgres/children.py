"""Writer processes of the PostgreSQL fault tests: ``python -m tests.postgres.children …``.

``saver URL SCHEMA NAME COUNT``: saves steps 0..COUNT-1 of thread NAME, and
after each one tries to append the next step of the shared thread ``shared``
(load the latest, save latest + 1), so four writers contend for it. Every save
is acknowledged on stdout (a JSON line) only after it returned; a
``StepConflict`` on the shared thread is counted (another writer won that
step); any other error is reported and ends the process.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from forkpoint import CheckpointError, StepConflict
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


if __name__ == "__main__":
    asyncio.run(saver(*sys.argv[2:]) if sys.argv[1] == "saver" else asyncio.sleep(0))
