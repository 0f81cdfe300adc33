"""``forkpoint lg ...`` piped into a reader that stops early (``| head``) ends quietly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.base", reason="langgraph-checkpoint is not installed")

from forkpoint.langgraph import ForkpointSaver
from tests.cli.conftest import assert_closed_pipe_ends_quietly
from tests.langgraph.test_saver import checkpoint, config, meta

THREAD = "long"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One thread of 600 checkpoints with chatty metadata: far more output than a pipe holds."""
    path = tmp_path_factory.mktemp("pipe") / "lg.db"
    with ForkpointSaver.from_conn_string(str(path)) as saver:
        conf: Any = config(THREAD)
        for step in range(600):
            cp = checkpoint({"n": step}, {"n": step + 1})
            conf = saver.put(conf, cp, meta(step, note="n" * 200), {"n": step + 1})
    return path


@pytest.mark.parametrize(
    "command",
    [("history", THREAD), ("history", THREAD, "--json"), ("tree", THREAD)],
)
def test_a_closed_pipe_ends_quietly(db: Path, command: tuple[str, ...]) -> None:
    assert_closed_pipe_ends_quietly("lg", *command, "--db", str(db), read=120)
