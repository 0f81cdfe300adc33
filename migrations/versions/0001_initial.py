"""Initial schema: threads (lineage and summary) and checkpoints keyed by (thread_id, step).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


# Steps reach 2**63 - 1: SQLite's INTEGER holds that, PostgreSQL needs BIGINT.
STEP = sa.Integer().with_variant(sa.BigInteger(), "postgresql")
# Thread ids order by code point, as in SQLite and Python, whatever the database's locale.
THREAD_ID = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "threads",
        sa.Column("thread_id", THREAD_ID, nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.Column("latest_step", STEP, nullable=False),
        sa.Column("checkpoint_count", STEP, nullable=False),
        sa.Column("parent_thread_id", THREAD_ID, nullable=True),
        sa.Column("parent_step", STEP, nullable=True),
        sa.Column("metadata", sa.Text(), server_default=sa.text("'{}'"), nullable=False),
        sa.PrimaryKeyConstraint("thread_id"),
    )
    op.create_index("ix_threads_parent", "threads", ["parent_thread_id"])
    if op.get_context().dialect.name != "postgresql":
        # On PostgreSQL an index on updated_at, which every save changes, would make every
        # thread-row update a non-HOT one (new index entries, bloat); the inactivity sweep
        # scans the threads table instead.
        op.create_index("ix_threads_updated_at", "threads", ["updated_at"])
    op.create_table(
        "checkpoints",
        sa.Column("thread_id", THREAD_ID, nullable=False),
        sa.Column("step", STEP, nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("queue", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", "step"),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    if op.get_context().dialect.name != "postgresql":
        op.drop_index("ix_threads_updated_at", table_name="threads")
    op.drop_index("ix_threads_parent", table_name="threads")
    op.drop_table("threads")
