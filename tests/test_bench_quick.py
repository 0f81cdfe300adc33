"""The benchmark harness runs end to end (``python -m bench.run --quick``), so it cannot rot.

No timing is asserted: this only checks that every workload produced its rows.
Without ``langgraph-checkpoint-sqlite`` (CI installs only the dev extras) the
harness must skip that contender with a note instead of failing.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8"]


def _run_quick(tmp_path: Path, *extra: str) -> str:
    out = tmp_path / "RESULTS-quick.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out.read_text(encoding="utf-8")


def _rows(report: str) -> set[tuple[str, str]]:
    """(workload, contender label) of every table row."""
    rows = set()
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in WORKLOADS:
            rows.add((cells[0], cells[1]))
    return rows


def _check_common(report: str) -> set[tuple[str, str]]:
    rows = _rows(report)
    for workload in WORKLOADS:
        assert (workload, "forkpoint (defaults: FULL)") in rows, workload
        assert (workload, "raw sqlite3, FULL") in rows, workload
    for workload in ("W1", "W2", "W3"):
        assert (workload, 'forkpoint durability="normal"') in rows
        assert (workload, "raw sqlite3, NORMAL") in rows
    assert "## Retention and storage" in report
    assert "keep_last=" in report
    assert "prune(keep_last=" in report
    assert "## Environment" in report
    assert "python -m bench.run --quick" in report
    return rows


@pytest.mark.slow
def test_quick_benchmark_writes_every_row(tmp_path: Path) -> None:
    report = _run_quick(tmp_path)
    rows = _check_common(report)
    if importlib.util.find_spec("langgraph") is not None:
        for workload in ("W1", "W2", "W3", "W4", "W5", "W7", "W8"):
            assert (workload, "LangGraph AsyncSqliteSaver") in rows, workload
        assert "## LangGraph graphs on ForkpointSaver" in report
        for workload in ("G1", "G2", "G3"):
            assert f"| {workload} |" in report, workload
    else:
        assert "LangGraph contender skipped" in report


@pytest.mark.slow
def test_quick_benchmark_without_langgraph(tmp_path: Path) -> None:
    report = _run_quick(tmp_path, "--no-langgraph")
    rows = _check_common(report)
    assert "LangGraph contender skipped" in report
    assert not any(contender.startswith("LangGraph") for _, contender in rows)
    assert "## LangGraph graphs" not in report


def test_a_new_run_keeps_the_sections_it_does_not_write() -> None:
    from bench.report import keep_foreign_sections

    old = (
        "# results\n\nold table\n\n## Notes\n\nold notes\n\n## CLI\n\ncli text\n\n### after\n\nx\n"
    )
    new = "# results\n\nnew table\n\n## Notes\n\nnew notes\n"
    merged = keep_foreign_sections(old, new)
    assert merged == new + "\n## CLI\n\ncli text\n\n### after\n\nx\n"
    assert keep_foreign_sections("", new) == new
    assert keep_foreign_sections(new, new) == new
    # A kept section stays where it was: after the section it followed.
    old = "# results\n\nold\n\n## W\n\nw\n\n## Graphs\n\ng\n\n## Notes\n\nn\n"
    new = "# results\n\nnew\n\n## W\n\nw2\n\n## Notes\n\nn2\n"
    assert keep_foreign_sections(old, new) == (
        "# results\n\nnew\n\n## W\n\nw2\n\n## Graphs\n\ng\n\n## Notes\n\nn2\n"
    )
