"""Without the ``langgraph`` extra the CLI still works; only its LangGraph commands say how to get it.

Each case runs ``forkpoint`` in a fresh process in which ``langgraph`` cannot be
imported, as if it were not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCK = (
    "import sys; sys.modules['langgraph'] = None; "  # importing langgraph now fails
    "from forkpoint.cli import main; sys.argv = ['forkpoint', *sys.argv[1:]]; main()"
)


def forkpoint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK, *args], capture_output=True, text=True, check=False
    )


def test_langgraph_commands_say_in_one_line_how_to_get_the_extra(db: Path, tmp_path: Path) -> None:
    for args in (
        ("--db", str(db), "lg", "threads"),
        ("--db", str(db), "lg", "show", "t"),
        ("--db", str(db), "lg", "prune", "--all", "--yes"),
        ("--db", str(tmp_path / "new.db"), "import-langgraph", str(db)),
    ):
        result = forkpoint(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            "forkpoint: error: LangGraph commands need the langgraph extra: "
            "pip install 'forkpoint[langgraph]'"
        ]
    assert not (tmp_path / "new.db").exists()


def test_the_rest_of_the_cli_does_not_need_langgraph(db: Path) -> None:
    result = forkpoint("--db", str(db), "threads", "--json")
    assert result.returncode == 0, result.stderr
    assert '"main"' in result.stdout
    assert "lg" in forkpoint("--help").stdout
