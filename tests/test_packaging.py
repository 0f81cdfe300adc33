"""The wheel ships what it must and works installed, away from the source tree.

Also: the library installs without the command line's dependencies (the
``cli`` extra), and the ``forkpoint`` script says how to get them.
"""

from __future__ import annotations

import os
import pkgutil
import site
import subprocess
import sys
import textwrap
import tomllib
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import forkpoint

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    import forkpoint
    from forkpoint import Checkpoint, GraphState, SqliteCheckpointer, StateSchema
    from forkpoint.migrate import migrations_dir
    from forkpoint.schema import HEAD_REVISION

    class S(StateSchema):
        n: int = 0

    async def main() -> None:
        async with SqliteCheckpointer.open("fresh.db", S) as cp:
            for step in range(3):
                await cp.save(
                    Checkpoint[S](thread_id="t", state=GraphState[S](data=S(n=step)), step=step, node="x")
                )
            latest = await cp.load("t")
            assert latest is not None and latest.state.data.n == 2, latest
            fork = await cp.fork("t", 1)
            assert [m.step for m in await cp.list_checkpoints(fork)] == [0, 1]
        print("FILE", os.path.realpath(forkpoint.__file__))
        print("MIGRATIONS", os.path.realpath(migrations_dir()))
        print("HEAD", HEAD_REVISION)

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_wheel_installs_and_migrates_away_from_the_source(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("forkpoint-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "forkpoint/_migrations/env.py",
        "forkpoint/_migrations/versions/0001_initial.py",
        "forkpoint/py.typed",
        "forkpoint/__init__.py",
    ):
        assert required in names, sorted(names)
    for script in (ROOT / "migrations" / "versions").glob("*.py"):
        assert f"forkpoint/_migrations/versions/{script.name}" in names, script.name
    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode())
        scripts = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = archive.read(scripts).decode()
    assert "forkpoint = forkpoint._console:main" in entry_points, entry_points
    assert "cli" in metadata.get_all("Provides-Extra", [])
    requires = [Requirement(r) for r in metadata.get_all("Requires-Dist", [])]
    assert {r.name.lower() for r in requires if r.marker is None} == {
        "pydantic",
        "alembic",
        "sqlalchemy",
    }, requires
    cli = {r.name for r in requires if r.marker and r.marker.evaluate({"extra": "cli"})}
    assert cli == {"typer", "rich"}, requires

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    fresh_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies come from the dev venv (no network); forkpoint itself must not.
    (fresh_site / "dev_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(fresh_site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "check.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), "-I", "check.py"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    installed = fresh_site.resolve()
    assert Path(lines["FILE"]).is_relative_to(installed), lines
    assert Path(lines["MIGRATIONS"]).is_relative_to(installed), lines
    assert (work / "fresh.db").stat().st_size > 0


def _dist_name(requirement: str) -> str:
    """The distribution a requirement names, lower-cased (``typer>=0.12`` → typer)."""
    return Requirement(requirement).name.lower()


def test_pyproject_keeps_the_cli_stack_in_its_extra() -> None:
    """The library's dependencies hold no CLI package; ``dev`` installs the CLI for the tests."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    library = {_dist_name(r) for r in project["dependencies"]}
    assert not library & {"typer", "rich", "click"}, library
    assert {_dist_name(r) for r in project["optional-dependencies"]["cli"]} == {"typer", "rich"}
    assert "forkpoint[cli]" in project["optional-dependencies"]["dev"]
    assert project["scripts"]["forkpoint"] == "forkpoint._console:main"


def _library_modules() -> list[str]:
    """Every module of the package except the command line itself."""
    return sorted(
        m.name
        for m in pkgutil.walk_packages(forkpoint.__path__, "forkpoint.")
        if m.name != "forkpoint.cli" and not m.name.startswith("forkpoint.cli.")
    )


def test_the_library_never_imports_the_cli_stack() -> None:
    """``import forkpoint`` and every library module load without typer, rich or click.

    A module of another extra whose own dependency is not installed is passed
    over; what it does import is still checked.
    """
    modules = _library_modules()
    assert "forkpoint.sync" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as exc:  # another extra's module (langgraph, ...)\n"
        "        if (exc.name or 'forkpoint').startswith('forkpoint'):\n"
        "            raise\n"
        "print(sorted(m for m in ('typer', 'rich', 'click') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def _console(blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script's entry point with ``blocked`` made impossible to import."""
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # what an install without the package looks like\n"
        f"sys.argv = ['forkpoint', *{list(args)!r}]\n"
        "from forkpoint._console import main\n"
        "main()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )


@pytest.mark.parametrize("blocked", ["typer", "rich"])
def test_console_without_the_cli_extra_says_how_to_install_it(blocked: str) -> None:
    done = _console(blocked, "threads")
    assert done.returncode == 1, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'forkpoint[cli]'" in lines[0]
    assert blocked in lines[0]


def test_console_shows_other_missing_modules_as_they_are() -> None:
    """Only the CLI's own packages get the install hint; anything else is a real fault."""
    done = _console("sqlite3", "threads")
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "forkpoint[cli]" not in done.stderr


def test_console_runs_the_cli_when_the_extra_is_installed() -> None:
    done = _console("not_a_module_anyone_imports", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
