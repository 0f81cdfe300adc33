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
    DatabaseCorrupt,
    DatabaseLocked,
    DiskIOError,
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
from .runner import (
    END,
    INPUT_NODE,
    UPDATE_NODE,
    InvalidGraph,
    InvalidNodeResult,
    Next,
    NodeFn,
    RouterFn,
    Runner,
    RunnerError,
    RunResult,
    ThreadAlreadyStarted,
    ThreadFinished,
)
from .sqlite import Durability, SqliteCheckpointer, StorageStats
from .transfer import ExportReport, ImportReport, export_threads, import_threads

__version__ = "0.1.0"

__all__ = [
    "END",
    "INPUT_NODE",
    "MAX_STEP",
    "MAX_THREAD_ID_LENGTH",
    "UPDATE_NODE",
    "Append",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMetadata",
    "CheckpointNotFound",
    "Checkpointer",
    "CheckpointerClosed",
    "DatabaseCorrupt",
    "DatabaseLocked",
    "DiskIOError",
    "Durability",
    "ExportReport",
    "ForkNotSupported",
    "ForkedProcess",
    "GraphState",
    "HistoryCheckpointer",
    "ImportReport",
    "InMemoryCheckpointer",
    "InvalidGraph",
    "InvalidInput",
    "InvalidNodeResult",
    "JsonState",
    "Merge",
    "MetadataFilter",
    "Next",
    "NodeFn",
    "NotAForkpointDatabase",
    "Overwrite",
    "PruneReport",
    "ReadOnlyDatabase",
    "Reducer",
    "RouterFn",
    "RunResult",
    "Runner",
    "RunnerError",
    "SchemaVersionError",
    "SerializationError",
    "SqliteCheckpointer",
    "StateSchema",
    "StateTooLarge",
    "StepConflict",
    "StorageError",
    "StorageFull",
    "StorageStats",
    "ThreadAlreadyStarted",
    "ThreadExists",
    "ThreadFinished",
    "ThreadInfo",
    "__version__",
    "export_threads",
    "import_threads",
]
