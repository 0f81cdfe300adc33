"""LangGraph saver tables: lg_checkpoints, lg_blobs, lg_list_items, lg_writes.

A LangGraph thread is a tree of checkpoints per namespace, identified by
checkpoint ids, with channel values shared between checkpoints and pending
writes that may arrive before their checkpoint; it does not fit forkpoint's
``(thread_id, step)`` rows, so it has tables of its own (see
``forkpoint/langgraph/store.py``). New empty tables only: the upgrade rewrites
no existing row.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "lg_checkpoints",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        sa.Column("parent_checkpoint_id", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("channels", sa.Text(), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        "ux_lg_checkpoints_id",
        "lg_checkpoints",
        ["thread_id", "checkpoint_ns", "checkpoint_id"],
        unique=True,
    )
    op.create_index(
        "ix_lg_checkpoints_order", "lg_checkpoints", ["thread_id", "checkpoint_ns", "seq"]
    )
    op.create_index("ix_lg_checkpoints_run", "lg_checkpoints", ["run_id"])
    op.create_table(
        "lg_blobs",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("encoding", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", "checkpoint_ns", "channel", "key"),
    )
    op.create_table(
        "lg_list_items",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("list_id", sa.Text(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", "checkpoint_ns", "channel", "list_id", "idx"),
    )
    op.create_table(
        "lg_writes",
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("checkpoint_ns", sa.Text(), nullable=False),
        sa.Column("checkpoint_id", sa.Text(), nullable=False),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("task_path", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
    )


def downgrade() -> None:
    op.drop_table("lg_writes")
    op.drop_table("lg_list_items")
    op.drop_table("lg_blobs")
    op.drop_index("ix_lg_checkpoints_run", table_name="lg_checkpoints")
    op.drop_index("ix_lg_checkpoints_order", table_name="lg_checkpoints")
    op.drop_index("ux_lg_checkpoints_id", table_name="lg_checkpoints")
    op.drop_table("lg_checkpoints")
