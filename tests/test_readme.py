"""The README's quickstart runs as written and prints what the README says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def section(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- section: {name} -->", f"<!-- /section: {name} -->"
    assert text.count(start) == 1
    assert text.count(end) == 1
    return text.split(start, 1)[1].split(end, 1)[0]


def blocks(text: str, lang: str) -> list[str]:
    """The contents of the fenced code blocks whose info string is ``lang``."""
    found: list[str] = []
    current: list[str] | None = None
    current_lang = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, current_lang = [], line[3:].strip()
            else:
                if current_lang == lang:
                    found.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    assert current is None, "unclosed code block"
    return found


def test_quickstart_runs_and_prints_what_it_promises(tmp_path: Path) -> None:
    quick = section("quickstart")
    code = blocks(quick, "python")
    assert code, "the quickstart has no python block"
    (promised,) = blocks(quick, "")  # the block showing the output
    script = tmp_path / "quickstart.py"
    script.write_text("\n\n".join(code), encoding="utf-8")
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
    assert "fork:" in done.stdout
    assert (tmp_path / "chat.db").exists()  # it really wrote a database, in the temp cwd


def test_quickstart_explains_the_step_rule() -> None:
    quick = section("quickstart")
    assert "StepConflict" in quick
    assert "seed" in quick


def test_api_section_names_every_export() -> None:
    import forkpoint

    api = section("api")
    missing = [
        name
        for name in forkpoint.__all__
        if name != "__version__" and not re.search(rf"\b{name}\b", api)
    ]
    assert missing == []
