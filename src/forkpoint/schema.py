"""The package's own table definitions (SQLAlchemy Core), the truth the migrations must build.

Only the migrations and the schema test import this module; the checkpointer
speaks plain SQL (``sqlite.py``) and ``import forkpoint`` never loads SQLAlchemy
(a test checks). The revision constants live in ``migrate.py`` for that reason
and are re-exported here.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, PrimaryKeyConstraint, Table, Text, text

from .migrate import APPLICATION_ID, HEAD_REVISION, KNOWN_REVISIONS

__all__ = ["APPLICATION_ID", "HEAD_REVISION", "KNOWN_REVISIONS", "metadata"]


metadata = MetaData()

threads = Table(
    "threads",
    metadata,
    Column("thread_id", Text, primary_key=True),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("latest_step", Integer, nullable=False),
    Column("checkpoint_count", Integer, nullable=False),
    Column("parent_thread_id", Text, nullable=True),
    Column("parent_step", Integer, nullable=True),
    Column("metadata", Text, nullable=False, server_default=text("'{}'")),
    # Delta rows directly below the latest step (bounds chains; see forkpoint/_delta.py).
    Column("delta_run", Integer, nullable=False, server_default=text("0")),
    Index("ix_threads_parent", "parent_thread_id"),
    Index("ix_threads_updated_at", "updated_at"),
)

# Column order matters: listings read only the columns before `state`, so SQLite
# never follows a large state's overflow pages to list a history.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("node", Text, nullable=False),
    Column("metadata", Text, nullable=False, server_default=text("'{}'")),
    Column("queue", Text, nullable=False),
    Column("state", Text, nullable=False),
    # 0: `state` is the full state JSON; 1: a reverse delta against the next newer step.
    Column("encoding", Integer, nullable=False, server_default=text("0")),
    # The version of the state class that wrote the row (rows from before versions: 1).
    Column("state_version", Integer, nullable=False, server_default=text("1")),
    PrimaryKeyConstraint("thread_id", "step"),
)


# --- LangGraph saver (revision 0004; see forkpoint/langgraph/store.py for why its own tables) ---

lg_checkpoints = Table(
    "lg_checkpoints",
    metadata,
    Column("seq", Integer, nullable=False),  # insertion counter: orders a thread's checkpoints
    Column("thread_id", Text, nullable=False),
    Column("checkpoint_ns", Text, nullable=False),
    Column("checkpoint_id", Text, nullable=False),
    Column("parent_checkpoint_id", Text, nullable=True),
    Column("run_id", Text, nullable=True),
    Column("created_at", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("channels", Text, nullable=False),  # {channel: lg_blobs.key}
    Column("checkpoint", Text, nullable=False),  # the checkpoint without its channel values
    PrimaryKeyConstraint("seq"),
    Index("ux_lg_checkpoints_id", "thread_id", "checkpoint_ns", "checkpoint_id", unique=True),
    Index("ix_lg_checkpoints_order", "thread_id", "checkpoint_ns", "seq"),
    Index("ix_lg_checkpoints_run", "run_id"),
)

lg_blobs = Table(
    "lg_blobs",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column("checkpoint_ns", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("encoding", Integer, nullable=False, server_default=text("0")),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("thread_id", "checkpoint_ns", "channel", "key"),
)

lg_list_items = Table(  # list values stored element by element, shared by their versions
    "lg_list_items",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column("checkpoint_ns", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("list_id", Text, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("thread_id", "checkpoint_ns", "channel", "list_id", "idx"),
)

lg_writes = Table(
    "lg_writes",
    metadata,
    Column("thread_id", Text, nullable=False),
    Column("checkpoint_ns", Text, nullable=False),
    Column("checkpoint_id", Text, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("task_path", Text, nullable=False, server_default=text("''")),
    Column("channel", Text, nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("thread_id", "checkpoint_ns", "checkpoint_id", "task_id", "idx"),
)
