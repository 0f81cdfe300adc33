"""The README's PostgreSQL section runs as written, against this run's database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_readme import blocks, section

README_URL = 'URL = "postgresql://agent@db.internal:5432/agents"'

# After the README's code: a thread in the local file, moved over by move(), is on the server.
CHECK = """
async def local_thread() -> None:
    async with SqliteCheckpointer.open("runs.db", Chat) as local:
        await local.append("local-1", Chat(topic="moved"), node="user")


async def moved() -> None:
    async with open_checkpointer(URL, Chat) as shared:
        print(sorted(t.thread_id for t in await shared.list_threads()))


asyncio.run(local_thread())
asyncio.run(move())
asyncio.run(moved())
"""


def test_postgres_section_runs_as_written(pg_url: str, tmp_path: Path) -> None:
    quick = blocks(section("quickstart"), "python")[0]
    assert quick.rstrip().endswith("asyncio.run(main())")
    definitions = quick.rstrip().removesuffix("asyncio.run(main())")  # the Chat state class
    code = "\n\n".join(blocks(section("postgres"), "python"))
    assert README_URL in code
    code = code.replace(README_URL, f"URL = {pg_url!r}")
    script = tmp_path / "postgres_readme.py"
    script.write_text(
        definitions + code + "\n\nasyncio.run(main())\n" + CHECK,
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['chat-1', 'local-1']\n"
