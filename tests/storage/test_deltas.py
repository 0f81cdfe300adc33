"""The SQLite storage format: reverse deltas keep history small and every step readable."""

from __future__ import annotations

import itertools
import os
import random
import sqlite3
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field

from forkpoint import (
    Append,
    Checkpoint,
    GraphState,
    InMemoryCheckpointer,
    SerializationError,
    SqliteCheckpointer,
    StateSchema,
)
from forkpoint._delta import DELTA_MIN_CHARS, MAX_RUN, apply_deltas, make_delta


class Chat(StateSchema):
    title: str = "chat"
    messages: Annotated[list[str], Append] = Field(default_factory=list)
    turn: int = 0


def chat_cp(thread_id: str, step: int, state: Chat) -> Checkpoint[Chat]:
    return Checkpoint[Chat](
        thread_id=thread_id, state=GraphState[Chat](data=state), step=step, node=f"n{step % 4}"
    )


def grow(steps: int, size: int = 400) -> list[Chat]:
    """States that grow by one ~size-byte message per step (workload W8's shape)."""
    out, state = [], Chat()
    for step in range(steps):
        state = Chat.apply(state, {"messages": [f"message {step}: " + "x" * size], "turn": step})
        out.append(state)
    return out


def encodings(path: Path, thread_id: str) -> list[int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT encoding FROM checkpoints WHERE thread_id = ? ORDER BY step", (thread_id,)
        ).fetchall()
    return [r[0] for r in rows]


def test_delta_roundtrip_random_edits() -> None:
    rnd = random.Random(7)
    alphabet = 'ab{}[]"\\é✓😀'
    for _ in range(300):
        texts = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 3000)))]
        for _ in range(rnd.randint(1, 5)):
            t = texts[-1]
            i = rnd.randint(0, len(t))
            j = rnd.randint(i, min(len(t), i + 40))
            texts.append(
                t[:i] + "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 20))) + t[j:]
            )
        deltas = [make_delta(old, new) for old, new in itertools.pairwise(texts)]
        if any(d is None for d in deltas):
            continue
        for k in range(len(deltas)):
            chain = [d for d in reversed(deltas[k:]) if d is not None]
            assert apply_deltas(texts[-1], chain) == texts[k]


@pytest.mark.parametrize("bad", ["[1,2]", '[-1,0,""]', '[0,99999,""]', "not json", "[0,0,5]"])
def test_damaged_delta_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="damaged delta"):
        apply_deltas("short text", [bad])


async def test_growing_history_is_stored_as_deltas_and_every_step_reads_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    states = grow(120)
    async with SqliteCheckpointer.open(path, Chat) as cp:
        for step, state in enumerate(states):
            await cp.save(chat_cp("t", step, state))
        for step, state in enumerate(states):
            got = await cp.get("t", step)
            assert got is not None
            assert got.state.data == state
        latest = await cp.load("t")
        assert latest is not None
        assert latest.state.data == states[-1]
    kinds = encodings(path, "t")
    assert kinds[-1] == 0  # the latest is always full
    assert kinds.count(1) > 100  # the old ones are deltas
    final_json = len(states[-1].model_dump_json())
    assert os.path.getsize(path) <= 5 * final_json + 64 * 1024


async def test_runs_of_deltas_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    async with SqliteCheckpointer.open(path, Chat) as cp:
        for step, state in enumerate(grow(MAX_RUN + 40, size=DELTA_MIN_CHARS)):
            await cp.save(chat_cp("t", step, state))
    kinds = encodings(path, "t")
    longest = run = 0
    for kind in kinds:
        run = run + 1 if kind == 1 else 0
        longest = max(longest, run)
    assert longest == MAX_RUN


async def test_identical_retry_of_a_delta_row_is_a_no_op(tmp_path: Path) -> None:
    states = grow(10, size=600)
    async with SqliteCheckpointer.open(tmp_path / "x.db", Chat) as cp:
        cps = [chat_cp("t", step, state) for step, state in enumerate(states)]
        for c in cps:
            await cp.save(c)
        assert encodings(tmp_path / "x.db", "t")[3] == 1
        await cp.save(cps[3])  # stored as a delta now, still recognised as identical
        assert [m.step for m in await cp.list_checkpoints("t")] == list(range(10))


@pytest.mark.parametrize("at", [0, 5, 9])
async def test_fork_at_a_delta_step_writes_the_fork_point_in_full(tmp_path: Path, at: int) -> None:
    path = tmp_path / "x.db"
    states = grow(10, size=600)
    async with SqliteCheckpointer.open(path, Chat) as cp:
        for step, state in enumerate(states):
            await cp.save(chat_cp("t", step, state))
        fork = await cp.fork("t", at)
        assert encodings(path, fork)[-1] == 0
        for step in range(at + 1):
            got = await cp.get(fork, step)
            assert got is not None
            assert got.state.data == states[step]
        # The fork grows on its own, deltas included, and the parent is untouched.
        extra = Chat.apply(states[at], {"messages": ["fork message " + "y" * 500]})
        await cp.save(chat_cp(fork, at + 1, extra))
        assert (await cp.get(fork, at)).state.data == states[at]  # type: ignore[union-attr]
        assert (await cp.load("t")).state.data == states[-1]  # type: ignore[union-attr]
        await cp.delete_thread("t")
        assert (await cp.get(fork, 0)).state.data == states[0]  # type: ignore[union-attr]


async def test_prune_keeps_every_remaining_step_readable(tmp_path: Path) -> None:
    states = grow(40, size=600)
    async with SqliteCheckpointer.open(tmp_path / "x.db", Chat) as cp:
        for step, state in enumerate(states):
            await cp.save(chat_cp("t", step, state))
        report = await cp.prune("t", keep_last=15)
        assert report.checkpoints_removed == 25
        for step in range(25, 40):
            assert (await cp.get("t", step)).state.data == states[step]  # type: ignore[union-attr]
        assert await cp.get("t", 24) is None


async def test_retention_policy_with_deltas(tmp_path: Path) -> None:
    states = grow(30, size=600)
    async with SqliteCheckpointer.open(tmp_path / "x.db", Chat, keep_last=5) as cp:
        for step, state in enumerate(states):
            await cp.save(chat_cp("t", step, state))
        assert [m.step for m in await cp.list_checkpoints("t")] == list(range(25, 30))
        for step in range(25, 30):
            assert (await cp.get("t", step)).state.data == states[step]  # type: ignore[union-attr]
        info = await cp.thread_info("t")
        assert info is not None
        assert info.checkpoint_count == 5


async def test_a_damaged_delta_names_its_step_and_spares_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    states = grow(8, size=600)
    async with SqliteCheckpointer.open(path, Chat) as cp:
        for step, state in enumerate(states):
            await cp.save(chat_cp("t", step, state))
    kinds = encodings(path, "t")
    assert kinds[3:6] == [1, 1, 1]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE checkpoints SET state = 'garbage' WHERE thread_id = 't' AND step = 5")
    async with SqliteCheckpointer.open(path, Chat) as cp:
        for step in (3, 5):  # 5 itself, and 3 whose chain passes through 5
            with pytest.raises(SerializationError) as info:
                await cp.get("t", step)
            assert "'t'" in str(info.value)
            assert f"step {step}" in str(info.value)
        for step in (6, 7):
            assert (await cp.get("t", step)).state.data == states[step]  # type: ignore[union-attr]
        assert len(await cp.list_checkpoints("t")) == 8


async def test_memory_backend_sees_the_same_states(tmp_path: Path) -> None:
    states = grow(20, size=600)
    mem = InMemoryCheckpointer(Chat)
    async with SqliteCheckpointer.open(tmp_path / "x.db", Chat) as cp:
        for step, state in enumerate(states):
            checkpoint = chat_cp("t", step, state)
            await cp.save(checkpoint)
            await mem.save(checkpoint)
        for step in range(20):
            assert await cp.get("t", step) == await mem.get("t", step)
