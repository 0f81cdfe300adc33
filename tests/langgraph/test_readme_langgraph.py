"""The README's LangGraph section runs as written and prints what it says it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed")

ROOT = Path(__file__).resolve().parents[2]


def code_blocks(text: str) -> dict[str, list[str]]:
    """Fenced blocks by info string."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    lang = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, lang = [], line[3:].strip()
            else:
                found.setdefault(lang, []).append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    assert current is None, "unclosed code block"
    return found


def test_the_langgraph_section_runs_and_prints_what_it_promises(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- section: langgraph -->", "<!-- /section: langgraph -->"
    assert text.count(start) == 1
    assert text.count(end) == 1
    blocks = code_blocks(text.split(start, 1)[1].split(end, 1)[0])
    (code,) = blocks["python"]
    (promised,) = blocks[""]
    script = tmp_path / "agent.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == promised
    assert (tmp_path / "agent.db").exists()
