"""``make test-floor`` installs exactly the lowest versions pyproject.toml's pins allow."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from tests.floors import NoFloor, constraints, floor, floors, main, mismatches

PROJECT = """
[project]
name = "x"
dependencies = ["aiosqlite>=0.22,<0.23", "pydantic>=2.13,<3", "Alembic~=1.13.1"]

[project.optional-dependencies]
cli = ["typer>=0.16"]
dev = ["pytest"]
"""


def test_a_floor_is_the_lowest_version_the_pin_allows() -> None:
    assert floor("aiosqlite>=0.22,<0.23") == ("aiosqlite", Version("0.22"))
    assert floor("Alembic~=1.13.1") == ("alembic", Version("1.13.1"))
    assert floor("x==1.2") == ("x", Version("1.2"))
    assert floor("x>=1.0,>=1.4") == ("x", Version("1.4"))


@pytest.mark.parametrize("pin", ["x", "x<2", "x>1.0", "x>=1.0,!=1.0"])
def test_a_pin_without_a_testable_floor_is_refused(pin: str) -> None:
    with pytest.raises(NoFloor):
        floor(pin)


def test_constraints_cover_the_library_and_the_cli_extra_only(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PROJECT)
    assert constraints(pyproject) == (
        "aiosqlite==0.22\nalembic==1.13.1\npydantic==2.13\ntyper==0.16\n"
    )


def test_the_real_pins_all_have_floors() -> None:
    assert {"pydantic", "alembic", "sqlalchemy", "typer", "rich"} <= set(floors())


def test_check_names_every_distribution_off_its_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PROJECT.replace("pydantic>=2.13,<3", "pydantic>=0.1"))
    wrong = mismatches(pyproject)
    assert any(line.startswith("pydantic: ") and "floor 0.1" in line for line in wrong), wrong
    assert main(["--nonsense"]) == 2
    assert "usage" in capsys.readouterr().err
