"""Reopening one store with another version of the state class, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from forkpoint import HistoryCheckpointer, InMemoryCheckpointer, StateSchema
from tests.conftest import Factory


class Reopen:
    """Opens the store the first checkpointer of a test wrote, read through another class.

    SQLite reopens its file, as a redeployed process does. The in-memory
    backend has no file to reopen, so the new checkpointer shares the first
    one's stored rows (test plumbing: those attributes are the backend's own).
    """

    def __init__(self, make: Factory) -> None:
        self.make = make
        self.first: HistoryCheckpointer[Any] | None = None

    async def __call__(self, state_type: type[StateSchema]) -> HistoryCheckpointer[Any]:
        cp = await self.make(state_type)
        if self.first is None:
            self.first = cp
        elif isinstance(cp, InMemoryCheckpointer):
            assert isinstance(self.first, InMemoryCheckpointer)
            cp._threads = self.first._threads
            cp._lock = self.first._lock
        return cp


@pytest.fixture
def open_as(make_checkpointer: Factory) -> Reopen:
    return Reopen(make_checkpointer)
