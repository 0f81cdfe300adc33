"""Reverse-delta storage: checkpoints.encoding and threads.delta_run.

``encoding`` 0 is a full state (every row written by revision 0001), 1 a
reverse delta against the thread's next newer step (see forkpoint/_delta.py).
``delta_run`` counts the delta rows directly below a thread's latest step, so
a save can bound chains without reading them. Both are added in place with
constant defaults: no row is rewritten, so the upgrade is instant.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "checkpoints",
        sa.Column("encoding", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "threads",
        sa.Column("delta_run", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("delta rows cannot be represented by revision 0001; restore a backup")
