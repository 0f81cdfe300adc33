"""Without a reachable server the PostgreSQL tests are skipped with the reason; CI makes that fail."""

from __future__ import annotations

import pytest

from tests.postgres import support

NOWHERE = "postgresql://postgres@127.0.0.1:1/test"


@pytest.mark.parametrize("required", ["", "1"])
async def test_no_server_is_a_skip_with_the_reason_or_a_failure_when_required(
    monkeypatch: pytest.MonkeyPatch, required: str
) -> None:
    monkeypatch.setenv("FORKPOINT_TEST_POSTGRES", NOWHERE)
    monkeypatch.setenv("FORKPOINT_REQUIRE_POSTGRES", required)
    monkeypatch.setattr(support, "_state", {})  # this run's real database stays cached apart
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome) as info:
        await support.run_database()
    message = str(info.value)
    assert f"PostgreSQL tests need a server ({NOWHERE})" in message
    assert "Connect" in message  # the driver's own reason: the connection was refused
    assert ("FORKPOINT_REQUIRE_POSTGRES=1" in message) == bool(required)
    with pytest.raises(outcome):  # later tests get the same answer without trying again
        await support.run_database()
