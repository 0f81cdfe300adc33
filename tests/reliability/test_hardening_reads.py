"""Reads that span several statements see one snapshot, whatever another writer commits meanwhile.

A read such as ``get()`` of a delta-stored step, or ``storage_stats()``, runs
several SQL statements. A writer (another checkpointer, another process) may
commit between any two of them. These tests make that happen deterministically:
:class:`Interleave` watches the thread that runs the checkpointer's SQL and, just
before its n-th statement, runs a write through a second checkpointer on the
same file. For every n the read must return what the file held at one single
moment: before the write or after it, never a mixture.

The hook is a profile function (``threading.setprofile``) that sees the
``sqlite3`` ``execute`` calls of threads started after it is installed, so it
depends on the backend running SQL through :mod:`sqlite3` on worker threads,
not on how the backend is organised.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import pytest
from pydantic import Field

from forkpoint import Append, Checkpoint, GraphState, SqliteCheckpointer, StateSchema

_STATEMENTS = ("execute", "executemany", "executescript")


@dataclass
class _Hook:
    at: int = 0  # run the action just before this statement (1-based); 0: disarmed
    thread: int | None = None
    seen: int = 0
    fired: bool = False
    action: Callable[[], None] | None = None


@contextmanager
def interleave() -> Iterator[_Hook]:
    """Install the statement hook for threads started inside the block (open checkpointers here)."""
    hook = _Hook()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "c_call" or not hook.at or getattr(arg, "__name__", "") not in _STATEMENTS:
            return
        if not isinstance(getattr(arg, "__self__", None), sqlite3.Connection | sqlite3.Cursor):
            return
        me = threading.get_ident()
        if hook.thread is None:
            hook.thread = me  # the first thread to run SQL while armed is the one under test
        elif hook.thread != me:
            return
        hook.seen += 1
        if hook.seen == hook.at and hook.action is not None:
            hook.at = 0
            hook.fired = True
            hook.action()

    threading.setprofile(profile)
    try:
        yield hook
    finally:
        threading.setprofile(None)


async def armed(hook: _Hook, at: int, action: Callable[[], None], read: Awaitable[Any]) -> Any:
    """Await ``read`` with ``action`` run just before its ``at``-th SQL statement."""
    hook.at, hook.thread, hook.seen, hook.fired, hook.action = at, None, 0, False, action
    try:
        return await asyncio.wait_for(read, 60)
    finally:
        hook.at = 0


def in_thread(work: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """An action running ``work()`` to completion on a fresh event loop in a fresh thread."""

    def action() -> None:
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(work())  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - reported by the caller below
                failure.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(60)
        assert not worker.is_alive(), "the interleaved write did not finish"
        assert not failure, f"the interleaved write failed: {failure[0]!r}"

    return action


class Chat(StateSchema):
    """A state that grows by one message a step, so older steps are stored as deltas.

    ``phase`` changes every 50 steps: a delta applied to the wrong newer state
    then yields a state that validates but was never saved.
    """

    phase: int = 0
    log: Annotated[list[str], Append] = Field(default_factory=list)
    step: int = 0  # after the log, so consecutive states share a long prefix


def _message(step: int) -> str:
    return f"message {step:05d} " + "abcdefghij" * 10


def chat(thread_id: str, step: int) -> Checkpoint[Chat]:
    return Checkpoint[Chat](
        thread_id=thread_id,
        state=GraphState[Chat](
            data=Chat(phase=step // 50, log=[_message(s) for s in range(step + 1)], step=step)
        ),
        step=step,
        node=f"n{step}",
    )


STEPS = 600
_TEMPLATES: dict[str, Path] = {}


async def _history_template(tmp_root: Path) -> Path:
    """A closed database with one 600-step thread of delta rows, built once per session."""
    if "history" not in _TEMPLATES:
        path = tmp_root / "history-template.db"
        async with SqliteCheckpointer.open(path, Chat) as cp:
            for step in range(STEPS):
                await cp.save(chat("t", step))
        _TEMPLATES["history"] = path
    return _TEMPLATES["history"]


@pytest.fixture(scope="module")
def template_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hardening-reads")


def _copy(template: Path, dest: Path) -> Path:
    shutil.copyfile(template, dest)
    return dest


async def test_get_of_a_delta_step_racing_a_prune_returns_the_saved_state_or_nothing(
    tmp_path: Path, template_dir: Path
) -> None:
    """Item 1: a prune committing between the statements of get() never yields another state."""
    template = await _history_template(template_dir)
    target = 257  # stored as a delta whose chain runs through the rows the prune removes
    for at in range(1, 8):
        path = _copy(template, tmp_path / f"race-{at}.db")

        async def prune(path: Path = path) -> None:
            async with SqliteCheckpointer.open(path, Chat) as other:
                report = await other.prune("t", keep_last=STEPS - 300)  # removes steps 0..299
                assert report.checkpoints_removed == 300

        with interleave() as hook:
            async with SqliteCheckpointer.open(path, Chat) as cp:
                got = await armed(hook, at, in_thread(prune), cp.get("t", target))
        if got is not None:
            assert got.step == target
            assert got.state.data == chat("t", target).state.data, (
                f"get() with a prune before its statement {at} returned the state of another step"
            )
        if not hook.fired:
            break  # the read ran fewer statements than `at`: every position has been tried


async def test_storage_stats_is_one_snapshot(tmp_path: Path, template_dir: Path) -> None:
    """Item 2: a thread saved between the statements of storage_stats() is counted everywhere or nowhere."""
    template = await _history_template(template_dir)
    for at in range(1, 12):
        path = _copy(template, tmp_path / f"stats-{at}.db")

        async def save_new_thread(path: Path = path) -> None:
            async with SqliteCheckpointer.open(path, Chat) as other:
                await other.save(chat("newcomer", 0))

        with interleave() as hook:
            async with SqliteCheckpointer.open(path, Chat) as cp:
                stats = await armed(hook, at, in_thread(save_new_thread), cp.storage_stats())
        assert set(stats.stored_bytes) == set(stats.latest_bytes), (
            f"a save before statement {at}: threads differ between stored_bytes and latest_bytes"
        )
        for thread_id, latest in stats.latest_bytes.items():
            assert latest <= stats.stored_bytes[thread_id]
        assert stats.freelist_count <= stats.page_count
        if not hook.fired:
            break
