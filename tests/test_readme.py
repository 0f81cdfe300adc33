"""The README runs as written, and speaks of forkpoint alone.

* Every ``python`` block is executed as a script, in a fresh temporary
  directory, twice in a row (what a reader does who runs it again); where the
  README shows what it prints (an "It prints:" block right after it), both
  runs must print exactly that.
* Every shell block that calls ``forkpoint`` runs those commands with the
  installed ``forkpoint`` on ``PATH``, against a database ``make demo`` wrote;
  a shown output that does not depend on the clock must be what they print.
* No user-facing text (README, and every string in ``src/``: docstrings,
  messages, CLI help) speaks of where forkpoint came from, except the README's
  "Design notes / credits" section.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import forkpoint
import forkpoint.sync

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELLS = ("", "sh", "bash", "shell", "console")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    section: str  # the ``<!-- section: NAME -->`` it sits in ("" outside any)
    line: int  # 1-based line of its opening fence
    lang: str
    text: str
    output: str | None  # for code: the block shown after "It prints:", if any

    @property
    def id(self) -> str:
        return f"{self.section or 'top'}-L{self.line}"


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, with its section and the expected output that follows it."""
    raw: list[tuple[str, int, str, str, str]] = []  # section, line, lang, text, prose before
    section = ""
    prose: list[str] = []
    current: list[str] | None = None
    lang, start = "", 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if current is None:
            if found := re.match(r"<!-- section: (\S+) -->", line):
                section = found.group(1)
            elif line.startswith("<!-- /section:"):
                section = ""
            if line.startswith("```"):
                current, lang, start = [], line[3:].strip(), number
            else:
                prose.append(line)
        elif line.startswith("```"):
            raw.append((section, start, lang, "".join(current), "".join(prose)))
            current, prose = None, []
        else:
            current.append(line)
    assert current is None, "unclosed code block"
    blocks = []
    for i, (sec, start, lng, body, _) in enumerate(raw):
        following = raw[i + 1] if i + 1 < len(raw) else None
        output = None
        if following is not None and following[4].strip() == "It prints:":
            output = following[3]
        blocks.append(Block(sec, start, lng, body, output))
    return blocks


def blocks(text: str, lang: str) -> list[str]:
    """The contents of the fenced blocks of ``text`` whose info string is ``lang``."""
    return [b.text for b in readme_blocks(text) if b.lang == lang]


def section(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- section: {name} -->", f"<!-- /section: {name} -->"
    assert text.count(start) == 1
    assert text.count(end) == 1
    return text.split(start, 1)[1].split(end, 1)[0]


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang == "python"]


def _env() -> dict[str, str]:
    """This interpreter's environment, its ``bin`` (the ``forkpoint`` command) first on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FORKPOINT_DB")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FORKPOINT_PROGRESS"] = "never"
    return env


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in PYTHON])
def test_python_block_runs_twice_in_a_fresh_directory(block: Block, tmp_path: Path) -> None:
    script = tmp_path.parent / f"{tmp_path.name}-block.py"
    script.write_text(block.text, encoding="utf-8")
    for run in ("first", "second"):
        done = subprocess.run(
            [sys.executable, "-W", "error::DeprecationWarning:__main__", str(script)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{run} run, README line {block.line}:\n{done.stderr}"
        if block.output is not None:
            assert done.stdout == block.output, f"{run} run, README line {block.line}"


def test_the_readme_has_runnable_examples_for_what_a_newcomer_reads_first() -> None:
    assert {b.section for b in PYTHON} >= {"quickstart", "sync", "retention"}
    quick = [b for b in PYTHON if b.section == "quickstart"]
    assert len(quick) == 1
    assert quick[0].output is not None
    assert "fork:" in quick[0].output
    assert "StepConflict" in section("quickstart")


# --- shell blocks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line: str
    output: str | None  # what the README shows it printing, if it shows anything


def forkpoint_commands(block: Block) -> list[Command]:
    """The ``forkpoint`` commands of a shell block, with the output shown after each.

    A block written as a session (``$ command`` then its output) shows output;
    a block of bare command lines does not. Other commands (``make``, ``pip``)
    are left to their own tests.
    """
    lines = block.text.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        found = [line.split("  #", 1)[0].strip() for line in lines]
        return [Command(c, None) for c in found if c.startswith("forkpoint ")]
    commands: list[Command] = []
    for i, line in enumerate(lines):
        if line.startswith("$ forkpoint"):
            shown: list[str] = []
            for later in lines[i + 1 :]:
                if later.startswith("$ ") or not later.strip():
                    break
                shown.append(later)
            commands.append(Command(line[2:], "\n".join(shown) + "\n" if shown else None))
    return commands


# The LangGraph section's commands read the agent.db its python example makes, not the demo
# database: tests/langgraph/test_readme_langgraph.py runs them there.
SHELL = [
    b for b in BLOCKS if b.lang in SHELLS and b.section != "langgraph" and forkpoint_commands(b)
]
CLOCK = re.compile(r"\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d")


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The database ``make demo`` writes, which the README's shell blocks explore."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    subprocess.run(
        [sys.executable, "-m", "forkpoint.demo", "--db", str(path)],
        cwd=path.parent,
        env=_env(),
        capture_output=True,
        timeout=300,
        check=True,
    )
    return path


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in SHELL])
def test_shell_block_commands_run(block: Block, demo_db: Path, tmp_path: Path) -> None:
    shutil.copyfile(demo_db, tmp_path / "demo.db")
    env = _env() | {"FORKPOINT_DB": "demo.db"}
    for command in forkpoint_commands(block):
        done = subprocess.run(
            ["bash", "-c", f"set -euo pipefail; {command.line}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"README line {block.line}: {command.line}\n{done.stderr}"
        if command.output is not None and not CLOCK.search(command.output):
            assert done.stdout == command.output, f"README line {block.line}: {command.line}"


def test_shell_blocks_are_found() -> None:
    """The blocks this file runs: the CLI section's commands at least."""
    assert any(b.section == "cli" for b in SHELL)
    session = Block("x", 1, "", "$ make demo\nhi\n$ forkpoint tree\na\nb\n\nmore\n", None)
    assert forkpoint_commands(session) == [Command("forkpoint tree", "a\nb\n")]
    plain = Block("x", 1, "sh", "pip install forkpoint\nforkpoint threads  # all\n", None)
    assert forkpoint_commands(plain) == [Command("forkpoint threads", None)]


# --- what the README and the code say ------------------------------------------------------

FORBIDDEN = re.compile(r"\bseed(?:'s)?\b|\bwesichain\b|\bissues?\b", re.IGNORECASE)
"""Words about how forkpoint was made, which mean nothing to a user."""

SOURCES = sorted(p for p in (ROOT / "src" / "forkpoint").rglob("*.py"))


def readme_offences(text: str) -> list[str]:
    """Lines of the README (outside its credits section) that use a forbidden word."""
    found = []
    in_credits = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("<!-- section: credits"):
            in_credits = True
        elif line.startswith("<!-- /section: credits"):
            in_credits = False
        elif not in_credits and FORBIDDEN.search(line):
            found.append(f"README.md:{number}: {line.strip()}")
    return found


def source_offences(path: Path, root: Path = ROOT) -> list[str]:
    """Strings of a module (docstrings, messages, help texts) that use a forbidden word."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(root)}:{node.lineno}: {node.value.strip()[:100]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and FORBIDDEN.search(node.value)
    ]


def test_the_readme_speaks_of_forkpoint_alone() -> None:
    assert readme_offences(README.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, id=str(p.relative_to(ROOT / "src"))) for p in SOURCES],
)
def test_source_strings_speak_of_forkpoint_alone(path: Path) -> None:
    assert source_offences(path) == []


def test_the_word_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""As in the Seed."""\nx = f"see {1} wesichain"\ny = "tissue issued"\n')
    assert len(source_offences(module, tmp_path)) == 2
    text = (
        "a\nthe issue's targets\n<!-- section: credits -->\nwesichain\n<!-- /section: credits -->\n"
    )
    assert readme_offences(text) == ["README.md:2: the issue's targets"]


def test_api_section_names_every_export() -> None:
    api = section("api")
    missing = [
        name
        for name in forkpoint.__all__
        if name != "__version__" and not re.search(rf"\b{name}\b", api)
    ]
    missing += [name for name in forkpoint.sync.__all__ if f"forkpoint.sync.{name}" not in api]
    assert missing == []
