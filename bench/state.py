"""The benchmark state (a pydantic model holding a list of short messages) and its inputs."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pydantic import BaseModel, Field

from forkpoint import StateSchema

__all__ = ["BenchState", "Message", "Sizes", "fixed_states", "growing_states", "json_size"]

_WORDS = (
    *("agent", "tool", "call", "result", "plan", "step", "search", "answer", "check", "retry"),
    *("user", "model", "token", "context", "memory", "graph", "node", "edge", "route", "state"),
    *("fetch", "parse", "write", "read", "summary", "draft", "review"),
)


class Message(BaseModel):
    """One short chat message."""

    role: str
    content: str


class BenchState(StateSchema):
    """What every contender stores: a list of messages."""

    messages: list[Message] = Field(default_factory=list)


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


def _message(rng: random.Random, index: int, size: int) -> Message:
    return Message(role=("user", "assistant", "tool")[index % 3], content=_text(rng, size))


def fixed_states(count: int, approx_bytes: int, *, seed: int = 1) -> list[BenchState]:
    """``count`` consecutive states of about ``approx_bytes`` of JSON each.

    The messages stay the same from step to step except the last one, which
    names the step (a run that keeps a bounded window of recent messages).
    """
    rng = random.Random(seed)  # noqa: S311 - benchmark text, not secrets
    per_message = 100  # characters of content + envelope; ~95 bytes of JSON per message
    base = [_message(rng, i, per_message - 36) for i in range(max(1, approx_bytes // 95))]
    states = []
    for step in range(count):
        last = Message(role="assistant", content=f"step {step}: " + base[-1].content[:50])
        states.append(BenchState.model_construct(messages=[*base[:-1], last]))
    return states


def growing_states(count: int, message_bytes: int = 400, *, seed: int = 2) -> list[BenchState]:
    """States that grow by one ~``message_bytes`` message per step (workload W8)."""
    rng = random.Random(seed)  # noqa: S311 - benchmark text, not secrets
    messages = [_message(rng, i, message_bytes - 32) for i in range(count)]
    return [BenchState.model_construct(messages=messages[: i + 1]) for i in range(count)]


def json_size(state: BenchState) -> int:
    """Bytes of the state's JSON, as pydantic writes it."""
    return len(state.model_dump_json().encode("utf-8"))


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: the specified ones for a full run, tiny ones for ``--quick``."""

    reps: int
    w1_saves: int
    w2_saves: int
    w3_tasks: int
    w3_saves: int
    w45_steps: int
    w4_loads: int
    w6_steps: int
    w8_steps: int
    keep_last: int

    @classmethod
    def full(cls, reps: int) -> Sizes:
        return cls(reps, 2000, 200, 100, 50, 10_000, 1000, 1000, 1000, 10)

    @classmethod
    def quick(cls) -> Sizes:
        return cls(1, 60, 10, 10, 5, 200, 50, 40, 40, 10)
