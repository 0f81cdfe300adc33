"""``python -m bench.cli --quick`` runs end to end, and ``--record`` keeps the rest of RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.cli import record

ROWS = ["history", "export", "check", "tree", "stats", "stats --bytes"]


def test_quick_run_prints_every_ratio(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--quick", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    for row in ROWS:
        assert f"\n| {row} | " in done.stdout, row
    assert list(tmp_path.iterdir()) == []  # the databases lived in a temporary directory


def test_record_replaces_only_its_own_subsection(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\nkept\n\n## Other\n\nalso kept\n", encoding="utf-8")
    record("### before\n\nold figures\n", "before", results)
    record("### after\n\nfirst\n", "after", results)
    record("### after\n\nsecond\n", "after", results)
    text = results.read_text(encoding="utf-8")
    assert "kept" in text
    assert "also kept" in text
    assert "old figures" in text
    assert "second" in text
    assert "first" not in text
    assert text.count("## CLI") == 1
