"""A checkpointer the program forgot to close does not hang the interpreter at exit."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

FORGETFUL = textwrap.dedent(
    """
    import asyncio, sys
    from forkpoint import SqliteCheckpointer
    from tests.conftest import Counter, make_cp

    async def main():
        cp = await SqliteCheckpointer.open(sys.argv[1], Counter)
        await cp.save(make_cp("t", 0))
        globals()["never_closed"] = cp

    asyncio.run(main())
    print("returned", flush=True)
    """
)


def test_unclosed_checkpointer_lets_the_process_exit(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    done = subprocess.run(
        [sys.executable, "-c", FORGETFUL, str(path)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        timeout=60,  # a hang guard: before the fix the child never exited
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "returned"
    with sqlite3.connect(path) as conn:  # the acknowledged save is there
        assert conn.execute("SELECT step FROM checkpoints WHERE thread_id = 't'").fetchall() == [
            (0,)
        ]
