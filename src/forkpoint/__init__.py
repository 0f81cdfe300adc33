"""forkpoint: durable checkpoints for agent runs and workflows.

Every step of a run is a checkpoint in SQLite; a crashed or paused run resumes
from its last step, its history can be listed, and any earlier step can be
forked into a new, independent thread (time travel).
"""

from __future__ import annotations

from .base import Checkpointer, HistoryCheckpointer, MetadataFilter, PruneReport
from .errors import (
    CheckpointerClosed,
    CheckpointError,
    CheckpointNotFound,
    DatabaseLocked,
    ForkedProcess,
    ForkNotSupported,
    InvalidInput,
    NotAForkpointDatabase,
    ReadOnlyDatabase,
    SchemaVersionError,
    SerializationError,
    StateTooLarge,
    StepConflict,
    StorageError,
    StorageFull,
    ThreadExists,
)
from .memory import InMemoryCheckpointer
from .models import (
    MAX_STEP,
    MAX_THREAD_ID_LENGTH,
    Append,
    Checkpoint,
    CheckpointMetadata,
    GraphState,
    JsonState,
    Merge,
    Overwrite,
    Reducer,
    StateSchema,
    ThreadInfo,
)
from .sqlite import Durability, SqliteCheckpointer

__version__ = "0.1.0"

__all__ = [
    "MAX_STEP",
    "MAX_THREAD_ID_LENGTH",
    "Append",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMetadata",
    "CheckpointNotFound",
    "Checkpointer",
    "CheckpointerClosed",
    "DatabaseLocked",
    "Durability",
    "ForkNotSupported",
    "ForkedProcess",
    "GraphState",
    "HistoryCheckpointer",
    "InMemoryCheckpointer",
    "InvalidInput",
    "JsonState",
    "Merge",
    "MetadataFilter",
    "NotAForkpointDatabase",
    "Overwrite",
    "PruneReport",
    "ReadOnlyDatabase",
    "Reducer",
    "SchemaVersionError",
    "SerializationError",
    "SqliteCheckpointer",
    "StateSchema",
    "StateTooLarge",
    "StepConflict",
    "StorageError",
    "StorageFull",
    "ThreadExists",
    "ThreadInfo",
    "__version__",
]
