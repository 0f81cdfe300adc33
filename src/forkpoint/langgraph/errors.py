"""The errors the LangGraph saver adds to forkpoint's tree (all under ``CheckpointError``).

::

    SerializationError
    ├── UnregisteredType     a value of a type the registry does not know, refused on save
    └── UndecodableValue     a stored value that is not what forkpoint writes (forged, damaged)
    CalledFromEventLoop      (forkpoint.sync's: one concept, one base to catch)
    └── SyncCallOnEventLoop  a sync saver method called on a thread that runs an event loop

Each carries ``channel`` (the channel, write or field being encoded) and
``where`` (a JSON path inside it) when known, so the message points at the value.
"""

from __future__ import annotations

from ..errors import CalledFromEventLoop, SerializationError

__all__ = ["SyncCallOnEventLoop", "UndecodableValue", "UnregisteredType", "ValueCodecError"]


class ValueCodecError(SerializationError):
    """Base of the two value errors: a channel name and a JSON path locate the value."""

    def __init__(
        self,
        message: str,
        *,
        channel: str | None = None,
        where: str = "$",
        thread_id: str | None = None,
    ) -> None:
        self.channel = channel
        self.where = where
        located = message if channel is None else f"{message} in channel {channel!r} at {where}"
        super().__init__(located, thread_id=thread_id)


class UnregisteredType(ValueCodecError):
    """A value's type is not in the saver's type registry; nothing was written.

    Register the class (``saver.registry.register(MyModel)``) or give the graph a
    state schema that names it.
    """


class UndecodableValue(ValueCodecError):
    """A stored value is malformed, names an unknown registry entry, or fails validation."""


class SyncCallOnEventLoop(CalledFromEventLoop):
    """A sync method was called on a thread that is running an event loop.

    Waiting there for the database would block the very loop that may have to
    run to finish the call (a deadlock); use the ``a``-prefixed method instead.
    """
