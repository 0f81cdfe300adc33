"""CI cannot pass by skipping what it exists to run.

The LangGraph and PostgreSQL tests skip, saying why, on a machine without their
extras; in CI (``CI`` set, as ``.ci/run`` runs) a missing extra fails here instead.
"""

from __future__ import annotations

import importlib.util
import os

# The modules the optional suites import before anything else (their importorskip lines).
EXTRA_MODULES = (
    "asyncpg",
    "langgraph",
    "langgraph.checkpoint.sqlite",
    "langgraph.checkpoint.conformance",
)


def missing_extras(names: tuple[str, ...] = EXTRA_MODULES) -> list[str]:
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            missing.append(name)
    return missing


def test_ci_has_every_extra_the_suite_tests() -> None:
    missing = missing_extras()
    in_ci = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
    assert not (in_ci and missing), f"CI would skip the suites needing {missing}: install .[dev]"


def test_the_check_names_missing_modules() -> None:
    names = ("forkpoint", "forkpoint_no_such_extra", "forkpoint_no_such_extra.sub")
    assert missing_extras(names) == ["forkpoint_no_such_extra", "forkpoint_no_such_extra.sub"]
