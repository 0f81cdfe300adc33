"""The lowest versions forkpoint's dependency pins allow, read from pyproject.toml.

``make test-floor`` installs exactly these (as a pip constraints file) in a
venv of its own and runs the test suite there, so a floor in pyproject.toml is
tested, never a guess, and cannot drift from what is tested.

``python -m tests.floors`` prints the constraints; ``--check`` exits 1 unless
every floored distribution is installed at its floor.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
FLOORED_EXTRAS = ("cli",)
"""Extras whose pins are floored too, beside the library's own dependencies."""


class NoFloor(ValueError):
    """A dependency whose pin has no lower bound to test."""


def floor(requirement: str) -> tuple[str, Version]:
    """The distribution a requirement names and the lowest version its specifier allows."""
    req = Requirement(requirement)
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    if not lows:
        raise NoFloor(f"{requirement!r} has no lower bound (>=, == or ~=): its floor is a guess")
    low = max(lows)
    if not req.specifier.contains(low, prereleases=True):
        raise NoFloor(f"{requirement!r}: its lower bound {low} is excluded by the rest of the pin")
    return req.name.lower(), low


def floors(pyproject: Path = PYPROJECT) -> dict[str, Version]:
    """Every pinned dependency of the library (and of ``FLOORED_EXTRAS``) at its floor."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    pins = list(project["dependencies"])
    for extra in FLOORED_EXTRAS:
        pins += project["optional-dependencies"][extra]
    return dict(floor(pin) for pin in pins)


def constraints(pyproject: Path = PYPROJECT) -> str:
    """A pip constraints file: ``name==floor`` per line."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(floors(pyproject).items()))


def mismatches(pyproject: Path = PYPROJECT) -> list[str]:
    """Floored distributions installed at another version (or not at all)."""
    wrong = []
    for name, version in sorted(floors(pyproject).items()):
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong.append(f"{name}: not installed (floor {version})")
            continue
        if installed != version:
            wrong.append(f"{name}: {installed} installed, floor {version}")
    return wrong


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        wrong = mismatches()
        for line in wrong:
            print(f"floor: {line}", file=sys.stderr)
        if not wrong:
            print("floors installed:", ", ".join(f"{n} {v}" for n, v in sorted(floors().items())))
        return 1 if wrong else 0
    if argv:
        print("usage: python -m tests.floors [--check]", file=sys.stderr)
        return 2
    sys.stdout.write(constraints())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
