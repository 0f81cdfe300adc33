"""The two tiers of the fault suite.

Scenarios that repeat take the ``scale`` fixture: ``fast`` (1, the default
run) and ``soak`` (10, marked ``soak``). Soak items are deselected unless
``FORKPOINT_SOAK=1`` (``make soak``), so ``make test`` runs the fast tier only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.support import LIVE_CHILDREN, SOAK_FACTOR

_HERE = Path(__file__).resolve().parent


@pytest.fixture(
    params=[
        pytest.param(1, id="fast"),
        pytest.param(SOAK_FACTOR, id="soak", marks=pytest.mark.soak),
    ]
)
def scale(request: pytest.FixtureRequest) -> int:
    """Iteration multiplier: 1 in the fast tier, 10 in the soak tier."""
    return int(request.param)


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    """Whatever a test did or failed to do, none of its child processes outlives it."""
    yield
    while LIVE_CHILDREN:
        child = LIVE_CHILDREN.pop()
        if not child.finished:
            child.kill()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("FORKPOINT_SOAK") == "1":
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        mine = Path(str(item.fspath)).resolve().is_relative_to(_HERE)
        (dropped if mine and item.get_closest_marker("soak") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
