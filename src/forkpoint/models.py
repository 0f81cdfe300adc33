"""The data model: user state, checkpoints, and what listings return.

``Checkpoint`` holds a ``GraphState`` wrapping the user's ``StateSchema``,
the ``step`` it was taken at, the ``node`` that just finished and the
``queue`` of pending ``(node, path_id)`` pairs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from ._checks import MAX_STEP, MAX_THREAD_ID_LENGTH, check_step, check_thread_id
from .errors import InvalidInput, InvalidUpdate
from .versioning import UpgradeStep, declare_version

__all__ = [
    "INTERRUPT_KEY",
    "MAX_STEP",
    "MAX_THREAD_ID_LENGTH",
    "Append",
    "Checkpoint",
    "CheckpointMetadata",
    "GraphState",
    "JsonState",
    "Merge",
    "Overwrite",
    "Reducer",
    "StateSchema",
    "ThreadInfo",
    "ThreadStatus",
    "check_step",
    "check_thread_id",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- reducers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reducer:
    """Per-field reducer for :meth:`StateSchema.apply`, declared with ``Annotated``.

    ``fn(current_value, update_value)`` returns the field's new value. A
    reducer refuses a value it cannot combine by raising ``TypeError`` or
    ``ValueError``; :meth:`StateSchema.apply` turns that into
    :class:`~forkpoint.InvalidUpdate` naming the field.
    """

    fn: Callable[[Any, Any], Any]

    def __call__(self, current: Any, update: Any) -> Any:
        return self.fn(current, update)


def _kind(value: object) -> str:
    return type(value).__name__


def _append(current: Any, update: Any) -> Any:
    # Only real sequences of items: a str (or bytes) is iterable but is one value, and a
    # set or dict has no order to append in.
    if not isinstance(update, list | tuple):
        raise TypeError(
            f"Append needs a list of items to append, not {_kind(update)}"
            + (" (wrap a single string in a list)" if isinstance(update, str | bytes) else "")
        )
    if not isinstance(current, list | tuple):
        raise TypeError(f"Append needs a list field, but the current value is {_kind(current)}")
    return [*current, *update]


def _merge(current: Any, update: Any) -> Any:
    if not isinstance(update, Mapping):
        raise TypeError(f"Merge needs a mapping of keys to merge in, not {_kind(update)}")
    if not isinstance(current, Mapping):
        raise TypeError(f"Merge needs a dict field, but the current value is {_kind(current)}")
    return {**current, **update}


Overwrite = Reducer(lambda _current, update: update)
"""The update replaces the field (the default for fields without a reducer)."""

Append = Reducer(_append)
"""List field: the update (a list or tuple) is appended, e.g. ``Annotated[list[str], Append]``.

Any other value, a ``str`` included, raises :class:`~forkpoint.InvalidUpdate`.
"""

Merge = Reducer(_merge)
"""Dict field: the update's keys (a mapping) are merged in; anything else raises
:class:`~forkpoint.InvalidUpdate`."""


class StateSchema(BaseModel):
    """Base class for user state.

    Subclass it with the fields of your state. :meth:`apply` is the reducer
    that folds a node's update into the current state.

    **Versions.** ``class Ticket(StateSchema, version=3)`` declares the
    version (default 1) that every checkpoint saved with the class records;
    ``@upgrade_from(N)`` functions in the class body upgrade a stored state of
    version N to N + 1, and the chain must be complete when the class is
    defined (see :mod:`forkpoint.versioning`).

    **No unknown keys.** A state class forbids keys it does not declare
    (``extra="forbid"``): constructing it with one is a ``ValidationError``,
    and a stored state holding one is a ``StateVersionError`` naming the keys,
    never a silent drop. A class that sets ``extra="ignore"`` opts in to
    dropping them; ``extra="allow"`` keeps them (as :class:`JsonState` does).
    """

    model_config = ConfigDict(
        ser_json_inf_nan="constants", validate_assignment=False, extra="forbid"
    )

    state_version: ClassVar[int] = 1
    """The version this class stores; set with ``class X(StateSchema, version=N)``."""

    _reducers: ClassVar[dict[str, Reducer]] = {}
    _upgrade_steps: ClassVar[dict[int, UpgradeStep]] = {}

    def __init_subclass__(cls, *, version: int | None = None, **kwargs: Any) -> None:
        # Checked as the class statement runs: a broken chain never defines a class.
        cls.state_version, cls._upgrade_steps = declare_version(cls, version)
        super().__init_subclass__(**kwargs)

    @classmethod
    def __pydantic_init_subclass__(cls, *, version: int | None = None, **kwargs: Any) -> None:
        # ``version`` was handled by __init_subclass__; pydantic passes class keywords to both.
        super().__pydantic_init_subclass__(**kwargs)
        reducers: dict[str, Reducer] = {}
        for name, field in cls.model_fields.items():
            for meta in field.metadata:
                if isinstance(meta, Reducer):
                    reducers[name] = meta
        cls._reducers = reducers

    @classmethod
    def apply(cls, current: Self, update: Mapping[str, Any] | BaseModel | None) -> Self:
        """Return a new state: ``current`` with ``update`` folded in, re-validated.

        ``update`` is a mapping of field names to values, or a model whose
        explicitly set fields are used (a partial update). Fields declared with
        a :class:`Reducer` (``Annotated[list[str], Append]``) combine old and
        new value; the others are overwritten. ``current`` is not changed.
        Unknown fields or values that fail validation raise ``InvalidInput``;
        a value a reducer refuses (a ``str`` for an ``Append`` field) raises
        :class:`~forkpoint.InvalidUpdate`, whose ``field`` names the field.
        """
        if not isinstance(current, cls):
            raise InvalidInput(
                f"current state must be a {cls.__name__}, not {type(current).__name__}"
            )
        if update is None:
            return current.model_copy(deep=True)
        if isinstance(update, BaseModel):
            changes = {name: getattr(update, name) for name in update.model_fields_set}
        elif isinstance(update, Mapping):
            changes = dict(update)
        else:
            raise InvalidInput(f"update must be a mapping or a model, not {type(update).__name__}")
        unknown = sorted(str(k) for k in changes if k not in cls.model_fields)
        if unknown:
            raise InvalidInput(
                f"update names unknown fields of {cls.__name__}: {', '.join(unknown)}"
            )
        merged = {name: getattr(current, name) for name in cls.model_fields}
        for name, value in changes.items():
            reducer = cls._reducers.get(name)
            if reducer is None:
                merged[name] = value
                continue
            try:
                merged[name] = reducer(merged[name], value)
            except (TypeError, ValueError) as exc:
                raise InvalidUpdate(f"field {name!r} of {cls.__name__}: {exc}", field=name) from exc
        try:
            # Round-trip through python mode so the result shares nothing with `current`.
            return cls.model_validate(
                cls.model_construct(**merged).model_dump(round_trip=True, warnings=False)
            )
        except ValidationError as exc:
            raise InvalidInput(f"update does not validate as {cls.__name__}: {exc}") from exc


class JsonState(StateSchema):
    """Any JSON object as state, for tools that read a database without the user's classes.

    The command-line interface opens databases with it: every field stored is
    kept (``extra="allow"``) and written back unchanged.

    The rows it reads may have been written by any version of the user's
    class; it runs no upgrade step, shows each state as stored and remembers
    the version (:attr:`stored_version`), so writing the state back (a copy to
    another database, an import) records the version that wrote the data.
    Equality compares the data only.
    """

    model_config = ConfigDict(extra="allow")

    _reads_any_version: ClassVar[bool] = True
    _stored_version: int = PrivateAttr(default=1)

    @property
    def stored_version(self) -> int:
        """The version of the user's class that wrote this state (1 for one made in code)."""
        return self._stored_version

    @classmethod
    def from_stored(cls, data: Mapping[str, Any], version: int) -> Self:
        """A state holding ``data`` as written by ``version`` of its class (for importers)."""
        if type(version) is not int or version < 1:
            raise InvalidInput(f"a state version is an int ≥ 1, not {version!r}")
        state = cls.model_validate(dict(data))
        state._stored_version = version
        return state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JsonState):
            return NotImplemented
        return type(self) is type(other) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable, as every pydantic model


S = TypeVar("S", bound=StateSchema)


def _aware_utc(value: datetime) -> datetime:
    """The time in UTC; ValueError (so pydantic's ValidationError) if naive or out of range there."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # exists in its own offset, not in UTC: 0001-01-01T00:00+01:00
        raise ValueError(f"created_at {value.isoformat()} is out of range in UTC") from None


AwareUTC = Annotated[datetime, AfterValidator(_aware_utc)]
Step = Annotated[int, Field(ge=0, le=MAX_STEP, strict=True)]


class GraphState(BaseModel, Generic[S]):
    """The state wrapper of a checkpoint: one field, ``data``, the user's state."""

    data: S


class Checkpoint(BaseModel, Generic[S]):
    """One saved step of a thread.

    ``created_at`` is set at construction (timezone-aware UTC) and stored as
    RFC 3339; ``metadata`` is free JSON (run id, source, tags) returned exactly.
    """

    thread_id: str
    state: GraphState[S]
    step: Step
    node: str
    queue: list[tuple[str, Step]] = Field(default_factory=list)
    created_at: AwareUTC = Field(default_factory=_utcnow)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("thread_id")
    @classmethod
    def _thread_id(cls, value: str) -> str:
        return check_thread_id(value)


ThreadStatus = Literal["running", "interrupted", "done"]
"""Where a thread stands, read from its latest checkpoint (see :class:`ThreadInfo`)."""

INTERRUPT_KEY = "interrupt"
"""The checkpoint metadata key that marks a paused run (the runner writes ``"before"``/``"after"``)."""


class CheckpointMetadata(BaseModel):
    """What a history listing returns for one checkpoint; never the state.

    ``step`` is the checkpoint's step (``seq`` is its deprecated former
    name, still readable, and accepted on construction); ``node`` the node
    that just finished; ``queue`` the pending ``(node, path_id)`` pairs, in order.
    """

    model_config = ConfigDict(frozen=True)

    step: int = Field(validation_alias=AliasChoices("step", "seq"))
    created_at: datetime
    node: str
    queue: list[tuple[str, int]] = Field(default_factory=list)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def seq(self) -> int:
        """Deprecated: the former name of :attr:`step`."""
        warnings.warn(
            "CheckpointMetadata.seq is deprecated; use .step", DeprecationWarning, stacklevel=2
        )
        return self.step


class ThreadInfo(BaseModel):
    """Summary and lineage of one thread.

    ``created_at`` is when the thread was created (its first save, or the
    fork); ``updated_at`` when it was last written. For a fork,
    ``parent_thread_id``/``parent_step`` name where it was forked from; they
    stay readable after the parent is deleted.

    ``latest_node`` and ``status`` are read from the latest checkpoint's row
    (never by decoding a state): ``"done"`` when its queue is empty (nothing
    left to run), ``"interrupted"`` when its metadata has the key
    ``"interrupt"`` (the runner's pause marker), else ``"running"`` — which,
    for a thread nobody is running any more (a crash), means "unfinished":
    resuming it continues from its queue. ``restore_thread`` ignores both
    fields: the restored rows decide them.
    """

    model_config = ConfigDict(frozen=True)

    thread_id: str
    created_at: datetime
    updated_at: datetime
    latest_step: int
    checkpoint_count: int
    parent_thread_id: str | None = None
    parent_step: int | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    latest_node: str = ""
    status: ThreadStatus = "running"
