"""Retry policies: how often a failing node is tried again, after how long, for which errors."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidGraph, InvalidInput

__all__ = ["RetryPolicy"]

RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


def _positive_number(value: object, name: str, *, zero: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidGraph(f"RetryPolicy.{name} must be a finite number, not {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise InvalidGraph(f"RetryPolicy.{name} must be {'≥' if zero else '>'} 0, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """How a node that raises is tried again.

    ``max_attempts`` counts every attempt, the first included (1 = never
    retry). Before attempt ``n + 1`` the runner sleeps
    ``min(max_delay, initial_delay * backoff ** (n - 1))``, scaled by a random
    factor in ``[1 - jitter, 1 + jitter]`` so that many threads failing
    together do not retry in lockstep. ``retry_on`` says which exceptions are
    retried: a tuple of exception classes (default: every ``Exception``), or a
    predicate ``fn(exc) -> bool``. ``InvalidInput`` (and the runner's own
    ``InvalidNodeResult``) is never retried: a wrong argument does not become
    right by waiting. A ``NodeTimeout`` is an exception like any other (it is
    also a ``TimeoutError``).
    """

    max_attempts: int = 3
    initial_delay: float = 0.5
    backoff: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.2
    retry_on: RetryOn = field(default=(Exception,))

    def __post_init__(self) -> None:
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise InvalidGraph(
                f"RetryPolicy.max_attempts must be an int ≥ 1, not {self.max_attempts!r}"
            )
        _positive_number(self.initial_delay, "initial_delay")
        _positive_number(self.max_delay, "max_delay")
        if _positive_number(self.backoff, "backoff") < 1:
            raise InvalidGraph(f"RetryPolicy.backoff must be ≥ 1, not {self.backoff!r}")
        if _positive_number(self.jitter, "jitter") > 1:
            raise InvalidGraph(f"RetryPolicy.jitter must be between 0 and 1, not {self.jitter!r}")
        retry_on: Any = self.retry_on
        if isinstance(retry_on, tuple):
            for cls in retry_on:
                if not (isinstance(cls, type) and issubclass(cls, BaseException)):
                    raise InvalidGraph(
                        f"RetryPolicy.retry_on must hold exception classes, not {cls!r}"
                    )
        elif not callable(retry_on):
            raise InvalidGraph(
                "RetryPolicy.retry_on must be a tuple of exception classes or a predicate, "
                f"not {retry_on!r}"
            )

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` (raised by an attempt) is worth another attempt under this policy."""
        if isinstance(exc, InvalidInput) or not isinstance(exc, Exception):
            return False
        if isinstance(self.retry_on, tuple):
            return isinstance(exc, self.retry_on)
        return bool(self.retry_on(exc))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), jitter included."""
        if type(attempt) is not int or attempt < 1:
            raise InvalidInput(f"attempt must be an int ≥ 1, not {attempt!r}")
        base = min(self.max_delay, self.initial_delay * self.backoff ** min(64, attempt - 1))
        factor = 1 + self.jitter * (2 * (rng or random).random() - 1)
        return max(0.0, min(self.max_delay, base * factor))


NO_RETRY = RetryPolicy(max_attempts=1)
"""The default when a runner is given no policy: one attempt, the failure is the result."""
