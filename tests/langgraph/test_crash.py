"""SIGKILL in the middle of a graph, then the thread resumes in a new process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed")

ROOT = Path(__file__).resolve().parents[2]


def child(mode: str, db: Path, folder: Path) -> list[str]:
    return [sys.executable, "-m", "tests.langgraph.crash_child", mode, str(db), str(folder)]


def env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


def test_sigkill_mid_superstep_then_resume_in_a_new_process(tmp_path: Path) -> None:
    """The finished parallel task's write survives the kill and is not run again."""
    db = tmp_path / "graph.db"
    started = subprocess.Popen(child("start", db, tmp_path), cwd=ROOT, env=env())
    try:
        for _ in range(6000):  # wait (at most ~60 s) until the child is inside `slow`
            if (tmp_path / "reached").exists() or started.poll() is not None:
                break
            time.sleep(0.01)
        assert (tmp_path / "reached").exists(), "the child never reached the slow node"
        started.send_signal(signal.SIGKILL)
    finally:
        started.kill()
        started.wait()
    assert started.returncode == -signal.SIGKILL
    resumed = subprocess.run(
        child("resume", db, tmp_path),
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert sorted(final["log"]) == ["fast", "finish", "prepare", "slow"]
    assert final["data"] == "0001"
    ran = (tmp_path / "ran").read_text(encoding="utf-8").split()
    assert ran.count("prepare") == 1  # its checkpoint was committed before the kill
    assert ran.count("fast") == 1  # its pending write was committed before the kill
    assert ran.count("slow") == 2  # killed once, run again
    assert ran.count("finish") == 1


def test_several_processes_write_one_file_without_locking_errors(tmp_path: Path) -> None:
    """LangGraph's SQLite saver reports "database is locked" here; the engine waits its turn."""
    db = tmp_path / "shared.db"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.langgraph.writer_child", str(db), f"p{n}", "15"],
            cwd=ROOT,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "done"
    from forkpoint.langgraph import ForkpointSaver

    with ForkpointSaver.from_conn_string(db) as saver:
        latest = {t.config["configurable"]["thread_id"] for t in saver.list(None)}
        finals = [saver.get_tuple({"configurable": {"thread_id": t}}) for t in sorted(latest)]
    assert latest == {f"p{n}-{i}" for n in range(4) for i in range(15)}
    assert all(
        f is not None and f.checkpoint["channel_values"]["log"] == ["a", "b", "c"] for f in finals
    )
