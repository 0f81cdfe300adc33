"""``check --state`` and ``upgrade``: the application's state class, named on the command line."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from forkpoint import Checkpoint, GraphState, SqliteCheckpointer, StateSchema
from tests.cli.conftest import Invoke, assert_user_error

TICKETS = """
from typing import Any
from forkpoint import StateSchema
from forkpoint.versioning import upgrade_from


class Ticket(StateSchema, version=2):
    headline: str

    @upgrade_from(1)
    def title_becomes_headline(state: dict[str, Any]) -> dict[str, Any]:
        state["headline"] = state.pop("title")
        return state


class Strict(StateSchema):
    other: int


NOT_A_CLASS = 3
"""


class TicketV1(StateSchema):
    """What the application stored before it renamed ``title``."""

    title: str


async def _build(path: Path) -> None:
    async with SqliteCheckpointer.open(path, TicketV1) as cp:
        for thread in ("a", "b"):
            for step in range(3):
                await cp.save(
                    Checkpoint[TicketV1](
                        thread_id=thread,
                        state=GraphState[TicketV1](data=TicketV1(title=f"{thread}{step}")),
                        step=step,
                        node="n",
                    )
                )


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A directory holding the application's module, as the current directory; the module name."""
    name = f"tickets_{request.node.name.replace('[', '_').replace(']', '_').replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(TICKETS), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return name


@pytest.fixture
def versioned(tmp_path: Path) -> Path:
    path = tmp_path / "tickets.db"
    asyncio.run(_build(path))
    return path


def _json(result: Any) -> Any:
    return json.loads(result.stdout)


def test_check_state_reads_old_rows_through_the_upgrade_steps(
    cli: Invoke, versioned: Path, app_dir: str
) -> None:
    result = cli(
        "check", "--state", f"{app_dir}:Ticket", "--all-steps", "--db", str(versioned), "--json"
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    states = _json(result)["states"]
    assert (states["ok"], states["current_version"], states["checkpoints_checked"]) == (True, 2, 6)
    assert states["stored_versions"] == {"1": 6}
    text = cli("check", "--state", f"{app_dir}:Ticket", "--db", str(versioned))
    assert "every state reads" in text.stdout


def test_check_state_lists_what_would_fail(cli: Invoke, versioned: Path, app_dir: str) -> None:
    result = cli("check", "--state", f"{app_dir}:Strict", "--db", str(versioned))
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if " @ " in line]
    assert len(lines) == 2  # the latest checkpoint of each thread
    assert all("unknown_keys" in line and "stored v1 → v1" in line for line in lines), lines
    assert "2 threads would fail" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--state", "nowhere_at_all:Ticket"), "cannot import"),
        (("--state", "{app}:Missing"), "has no 'Missing'"),
        (("--state", "{app}:NOT_A_CLASS"), "not a StateSchema subclass"),
        (("--state", "{app}"), "MODULE:QUALNAME"),
        (("--all-steps",), "--all-steps needs --state"),
    ],
)
def test_bad_state_options_are_usage_errors(
    cli: Invoke, versioned: Path, app_dir: str, args: tuple[str, ...], needle: str
) -> None:
    result = cli("check", *(a.format(app=app_dir) for a in args), "--db", str(versioned))
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.startswith("forkpoint: error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert needle in result.stderr


def test_upgrade_rewrites_old_states_and_export_import_keep_their_version(
    cli: Invoke, versioned: Path, app_dir: str, tmp_path: Path
) -> None:
    dry = _json(
        cli(
            "upgrade", "--state", f"{app_dir}:Ticket", "--dry-run", "--json", "--db", str(versioned)
        )
    )
    assert (dry["ok"], dry["dry_run"], dry["checkpoints_upgraded"]) == (True, True, 6)
    assert_user_error(
        cli("upgrade", "--state", f"{app_dir}:Ticket", "--db", str(versioned)), "--yes"
    )
    done = _json(
        cli("upgrade", "--state", f"{app_dir}:Ticket", "--yes", "--json", "--db", str(versioned))
    )
    assert (done["threads_upgraded"], done["checkpoints_upgraded"]) == (2, 6)
    exported = [
        json.loads(line) for line in cli("export", "a", "--db", str(versioned)).stdout.splitlines()
    ]
    assert exported[0]["version"] == 2
    rows = [r for r in exported if r.get("kind") == "checkpoint"]
    assert [(r["state_version"], r["state"]) for r in rows] == [
        (2, {"headline": f"a{step}"}) for step in range(3)
    ]
    dump = tmp_path / "a.jsonl"
    dump.write_text("".join(json.dumps(r) + "\n" for r in exported), encoding="utf-8")
    copy = tmp_path / "copy.db"
    assert cli("import", str(dump), "--db", str(copy)).exit_code == 0
    # Stored as version 2 again: read with Ticket, no upgrade step runs on it (it would fail).
    again = cli("check", "--state", f"{app_dir}:Ticket", "--all-steps", "--db", str(copy), "--json")
    assert again.exit_code == 0, again.stdout
    assert _json(again)["states"]["stored_versions"] == {"2": 3}


def test_a_version_1_export_still_imports(cli: Invoke, tmp_path: Path) -> None:
    dump = tmp_path / "old.jsonl"
    dump.write_text(
        '{"format": "forkpoint-export", "version": 1}\n'
        '{"kind": "thread", "thread_id": "t", "created_at": "2026-01-01T00:00:00Z", '
        '"updated_at": "2026-01-01T00:00:00Z", "latest_step": 0, "checkpoint_count": 1}\n'
        '{"kind": "checkpoint", "thread_id": "t", "step": 0, "node": "n", '
        '"created_at": "2026-01-01T00:00:00Z", "state": {"x": 1}}\n',
        encoding="utf-8",
    )
    target = tmp_path / "t.db"
    assert cli("import", str(dump), "--db", str(target)).exit_code == 0
    rows = [json.loads(x) for x in cli("export", "--db", str(target)).stdout.splitlines()]
    assert rows[-1]["state_version"] == 1
    assert rows[-1]["state"] == {"x": 1}
