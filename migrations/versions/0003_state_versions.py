"""State versions: checkpoints.state_version, the version of the state class that wrote the row.

Every row written before this revision was written by a state class without a
declared version, which is version 1; the column is added in place with that
constant default, so no row is rewritten and the upgrade is instant. Reads
upgrade a row of an older version with the class's steps; a save writes the
class's current version.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "checkpoints",
        sa.Column("state_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError(
        "rows of state versions above 1 cannot be represented by revision 0002; restore a backup"
    )
