"""forkpoint as a LangGraph checkpointer: ``from forkpoint.langgraph import ForkpointSaver``.

Needs the ``langgraph`` extra (``pip install 'forkpoint[langgraph]'``).
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base  # noqa: F401 - fail early with an install hint
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "forkpoint.langgraph needs LangGraph: pip install 'forkpoint[langgraph]'"
    ) from exc

from .builtin_types import default_registry
from .errors import SyncCallOnEventLoop, UndecodableValue, UnregisteredType, ValueCodecError
from .importer import ImportReport, import_langgraph
from .registry import MAX_DEPTH, TAG, Entry, TypeRegistry
from .saver import ForkpointSaver

__all__ = [
    "MAX_DEPTH",
    "TAG",
    "Entry",
    "ForkpointSaver",
    "ImportReport",
    "SyncCallOnEventLoop",
    "TypeRegistry",
    "UndecodableValue",
    "UnregisteredType",
    "ValueCodecError",
    "default_registry",
    "import_langgraph",
]
