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
    ValidationError,
    field_validator,
)

from ._checks import MAX_STEP, MAX_THREAD_ID_LENGTH, check_step, check_thread_id
from .errors import InvalidInput

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

    ``fn(current_value, update_value)`` returns the field's new value.
    """

    fn: Callable[[Any, Any], Any]

    def __call__(self, current: Any, update: Any) -> Any:
        return self.fn(current, update)


def _append(current: Any, update: Any) -> Any:
    return [*current, *update]


def _merge(current: Any, update: Any) -> Any:
    return {**current, **update}


Overwrite = Reducer(lambda _current, update: update)
"""The update replaces the field (the default for fields without a reducer)."""

Append = Reducer(_append)
"""List field: the update's items are appended, e.g. ``Annotated[list[str], Append]``."""

Merge = Reducer(_merge)
"""Dict field: the update's keys are merged in."""


class StateSchema(BaseModel):
    """Base class for user state.

    Subclass it with the fields of your state. :meth:`apply` is the reducer
    that folds a node's update into the current state.
    """

    model_config = ConfigDict(ser_json_inf_nan="constants", validate_assignment=False)

    _reducers: ClassVar[dict[str, Reducer]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
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
        Unknown fields or values that fail validation raise ``InvalidInput``.
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
            merged[name] = reducer(merged[name], value) if reducer else value
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
    """

    model_config = ConfigDict(extra="allow")


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
