"""Shared pieces of the fault suite: the state model, iteration counts, child processes, checks.

Two tiers run the same scenarios: the fast tier (``make test``) and the soak
tier (``make soak``: ``FORKPOINT_SOAK=1 pytest -m soak``), which multiplies
every iteration count by :data:`SOAK_FACTOR`. A scenario takes the ``scale``
fixture (1 or 10) and asks :func:`iterations` how often to repeat itself.

After every fault the standard checks run (:func:`check_database`):
``PRAGMA integrity_check`` is ``ok``, every acknowledged save is present and
identical, every thread loads and lists, and a fresh process reopens the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from forkpoint import Checkpoint, GraphState, SqliteCheckpointer, StateSchema

SOAK_FACTOR = 10
ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 120.0


class Blob(StateSchema):
    """The fault suite's state: a counter and a payload whose size the scenario picks."""

    n: int = 0
    payload: str = ""


def iterations(base: int, scale: int) -> int:
    """How many times a scenario repeats: ``base`` in the fast tier, 10x in the soak tier."""
    return base * scale


def payload(size: int, seed: int) -> str:
    """A deterministic, poorly compressible ASCII payload of ``size`` characters."""
    block = hashlib.sha256(str(seed).encode()).hexdigest()
    return (block * (size // len(block) + 1))[:size]


def make_blob(thread_id: str, step: int, size: int = 64, **kw: Any) -> Checkpoint[Blob]:
    return Checkpoint[Blob](
        thread_id=thread_id,
        state=GraphState[Blob](data=Blob(n=step, payload=payload(size, step))),
        step=step,
        node=f"node{step % 3}",
        **kw,
    )


def digest(state: StateSchema) -> str:
    """What an acknowledgement records about a saved state: the hash of its JSON."""
    return hashlib.sha256(state.model_dump_json().encode()).hexdigest()


# --- child processes ----------------------------------------------------------------------


def child_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "tests.reliability.children", *(str(a) for a in args)]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("FORKPOINT_SOAK", None)
    return env


def run_child(*args: object, timeout: float = CHILD_TIMEOUT) -> Any:
    """Run a child scenario to completion; its last stdout line, parsed as JSON."""
    done = subprocess.run(
        child_command(*args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"child {args} failed ({done.returncode}):\n{done.stderr}"
    lines = done.stdout.strip().splitlines()
    assert lines, f"child {args} printed nothing:\n{done.stderr}"
    return json.loads(lines[-1])


LIVE_CHILDREN: list[Child] = []
"""Every Child started; the suite's autouse fixture kills and reaps them after each test."""


class Child:
    """A child process whose stdout is a stream of JSON lines (acknowledgements)."""

    def __init__(self, *args: object) -> None:
        LIVE_CHILDREN.append(self)
        self.args = args
        self.stderr = ""
        self.finished = False
        self.proc = subprocess.Popen(
            child_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=child_env(),
        )
        self._buffer = b""
        self.lines: list[Any] = []

    def read_until(self, count: int, timeout: float = CHILD_TIMEOUT) -> list[Any]:
        """Wait until ``count`` lines in total have arrived (or the child ended)."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"child {self.args} sent {len(self.lines)} of {count} lines in time"
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._take(chunk)
        return self.lines

    def _take(self, chunk: bytes) -> None:
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        self.lines += [json.loads(line) for line in complete if line.strip()]

    def kill(self) -> list[Any]:
        """SIGKILL the child; every line it wrote before dying (a torn last line is dropped)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        return self.finish()

    def finish(self, timeout: float = CHILD_TIMEOUT) -> list[Any]:
        """Wait for the child to end; every line it wrote."""
        if self.finished:
            return self.lines
        self.finished = True
        out, err = self.proc.communicate(timeout=timeout)
        self._take(out)
        self.stderr = err.decode(errors="replace")
        return self.lines


# --- the standard checks ------------------------------------------------------------------


Acked = Mapping[tuple[str, int], str]
"""Acknowledged saves: (thread, step) → digest of the state that was saved."""


def raw_integrity(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


async def check_database(
    path: Path,
    acked: Acked,
    *,
    state_type: type[StateSchema] = Blob,
    contiguous: bool = True,
    reopen_in_child: bool = True,
) -> dict[str, int]:
    """The checks that hold after every fault; returns each thread's latest step.

    ``contiguous``: acknowledged steps of a thread start at 0 and have no gaps,
    and nothing beyond them is missing either (a thread's stored steps are
    0..latest with no hole).
    """
    assert raw_integrity(path) == ["ok"]
    latest: dict[str, int] = {}
    async with SqliteCheckpointer.open(path, state_type) as cp:
        assert await cp.integrity_check() == ["ok"]
        for (thread_id, step), want in acked.items():
            got = await cp.get(thread_id, step)
            assert got is not None, f"acknowledged save {thread_id!r}@{step} is lost"
            assert digest(got.state.data) == want, f"save {thread_id!r}@{step} changed"
        for info in await cp.list_threads():
            loaded = await cp.load(info.thread_id)
            assert loaded is not None
            assert loaded.step == info.latest_step
            steps = [m.step for m in await cp.list_checkpoints(info.thread_id)]
            assert steps[-1] == info.latest_step
            assert len(steps) == info.checkpoint_count
            if contiguous and info.parent_thread_id is None:
                assert steps == list(range(len(steps))), f"gap in {info.thread_id!r}: {steps}"
            latest[info.thread_id] = info.latest_step
    for thread_id, _ in acked:
        assert thread_id in latest, f"thread {thread_id!r} of an acknowledged save is gone"
    if reopen_in_child:
        seen = run_child("reopen", path)
        assert seen == latest
    return latest


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def can_mount() -> bool:
    """Whether this process can mount a tmpfs (root with CAP_SYS_ADMIN, e.g. in CI containers)."""
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    probe = Path(tempfile.mkdtemp(prefix="forkpoint-mount-probe-"))
    try:
        with tmpfs(probe, "64k"):
            return os.path.ismount(probe)
    except (OSError, subprocess.CalledProcessError):
        return False
    finally:
        if not os.path.ismount(probe):
            probe.rmdir()


def files_in(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
