"""Importing forkpoint (library or CLI) loads neither SQLAlchemy nor alembic: they are for migrating."""

from __future__ import annotations

import subprocess
import sys


def test_import_does_not_load_sqlalchemy_or_alembic() -> None:
    code = (
        "import sys, forkpoint, forkpoint.cli, forkpoint.sqlite, forkpoint.migrate\n"
        "print(sorted(m for m in ('sqlalchemy', 'alembic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
