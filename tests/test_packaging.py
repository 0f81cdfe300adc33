"""The wheel ships the migrations and works installed, away from the source tree."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

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
            assert [m.seq for m in await cp.list_checkpoints(fork)] == [0, 1]
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
