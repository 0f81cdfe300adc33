"""The README's "Changing your state class" example runs as written and prints what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import blocks, section


@pytest.mark.parametrize("run", [1, 2])
def test_the_versions_example_runs_and_prints_what_it_promises(tmp_path: Path, run: int) -> None:
    text = section("versions")
    (code,) = blocks(text, "python")
    (promised,) = blocks(text, "")
    script = tmp_path / "versions.py"
    script.write_text(code, encoding="utf-8")
    for _ in range(run):  # a second run in the same folder starts over as well
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
    assert (tmp_path / "tickets.db").exists()


def test_the_section_names_the_pre_deploy_check_and_the_rules() -> None:
    text = section("versions")
    for phrase in (
        "check_states",
        "forkpoint check --state",
        'extra="ignore"',
        "StateVersionError",
    ):
        assert phrase in text
