"""The one JSON encode/decode path every backend uses.

A checkpoint is stored as plain JSON text: the state as the user's pydantic
model dumps it, the queue and metadata as JSON arrays/objects, the time as
RFC 3339. Nothing stored ever names a Python class, and decoding never imports
or calls anything named by the data: a row is validated against the state type
the checkpointer was opened with, or it is a :class:`SerializationError`.

Encoding refuses, before anything is written, every value that would not come
back as it went in: NaN and ±infinity (pydantic would write ``null``), values
of unknown types, sets, tuples, bytes or models inside fields typed ``Any``
(they would come back as lists, strings or dicts), lone surrogates, and
circular references. The message names the field path.

Encoding runs on the caller's event loop, never on a thread of its own:
pydantic-core holds the GIL for the whole of a dump or a validation, so a
thread would not shorten the loop's stall and would add a hop to every small
state (measured, a 19 MB state: decoding stalls the loop 227 ms on it, 238 ms
from a thread; encoding 161 ms and 137-186 ms). Decoding may run where a
backend reads, inside the round trip the read makes anyway (SQLite decodes on
its reader thread, see ``Checkpointer._read_row``): no hop is added, the
stall is the same, and the loop is not woken only to decode a row it was
just handed.

It stays one module (~630 lines) because encoding and decoding must agree
exactly: every refusal on the way in has its twin check on the way out here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, cast

from ._pydantic import construct, core_schema, may_hold_non_finite, strict_serializer
from .errors import InvalidInput, SerializationError, StateTooLarge
from .models import (
    INTERRUPT_KEY,
    MAX_STEP,
    Checkpoint,
    CheckpointMetadata,
    GraphState,
    S,
    StateSchema,
    ThreadInfo,
    ThreadStatus,
    check_step,
    check_thread_id,
)
from .versioning import StateReader

__all__ = [
    "EncodedCheckpoint",
    "NotUtf8",
    "StateCodec",
    "decode_json_object",
    "dump_json",
    "format_time",
    "parse_time",
]


class NotUtf8(bytes):
    """A stored TEXT value that is not UTF-8 (only a crafted file holds one), as its bytes.

    A store hands it over where it cannot make a ``str`` of the column. It is
    not a ``str``, so every column check here refuses it like any other wrong
    type, and the row holding it is a ``SerializationError`` naming it.
    """


def wrong_type(what: str, value: object, expected: str) -> str:
    """The message for a stored ``what`` that is not the ``expected`` kind of value."""
    if isinstance(value, NotUtf8):
        return f"{what} is stored as text that is not UTF-8"
    return f"{what} is stored as {type(value).__name__}, not {expected}"


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with fixed microseconds (``2026-01-02T03:04:05.000006Z``), so stored times sort as text.

    InvalidInput for a time that exists in its own offset but not in UTC
    (``0001-01-01T00:00+01:00`` would be year 0).
    """
    if value.tzinfo is not UTC:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise InvalidInput(f"time {value.isoformat()} is out of range in UTC") from None
    # %-formatting the fields is ~2x faster than isoformat() plus slicing; every save formats twice.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031 - see above
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def parse_time(text: object) -> datetime:
    """Inverse of :func:`format_time` (also accepts any ISO 8601 with an offset).

    ValueError for anything that is not such a time in the range of ``datetime`` in UTC.
    """
    if type(text) is not str:
        raise ValueError(wrong_type("a time", text, "text"))
    value = datetime.fromisoformat(text)
    if text[-1:] == "Z":  # forkpoint's own format: already UTC, no second datetime needed
        return value
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"time {text!r} is out of range in UTC") from None


_TOO_DEEP = "JSON nested deeper than Python's recursion limit"


class _NonFinite:
    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


_FINDER = json.JSONDecoder(parse_constant=_NonFinite)


def _find(value: Any, match: Callable[[Any], bool], path: str = "") -> str | None:
    """Path (``.a[2].b``) of the first node of decoded JSON for which ``match`` holds."""
    if match(value):
        return path or "."
    if isinstance(value, dict):
        for key, item in value.items():
            found = _find(item, match, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item, match, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _non_finite_path(text: str | bytes) -> str | None:
    """Where a NaN/Infinity token stands in JSON text, or None if there is none.

    A fast substring test first; the exact parse only runs when the token's
    letters appear somewhere (usually inside an ordinary string).
    """
    probe = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if "NaN" not in probe and "Infinity" not in probe:
        return None
    try:
        return _find(_FINDER.decode(probe), lambda v: isinstance(v, _NonFinite))
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    except ValueError:
        return None  # not JSON at all; the caller's own parse reports that


def _plain_json(value: Any, path: str = "", *, filterable: bool = False) -> None:
    """Raise ValueError unless ``value`` is plain JSON data that round-trips unchanged.

    ``filterable`` (metadata, queues): SQLite's JSON functions, which metadata
    filters use, must see exactly what is stored, so integers must fit in 64
    bits (larger ones compare as inexact floats) and no key or string may hold
    U+0000 (the JSON functions cut text there, so a filter would match wrongly).
    """
    kind = type(value)
    if value is None or kind is bool:
        return
    if kind is str:
        if filterable and "\x00" in value:
            raise ValueError(f"the text at {path or '.'} holds U+0000 (NUL)")
        return
    if kind is int:
        if filterable and not -(2**63) <= value < 2**63:
            raise ValueError(f"{value} at {path or '.'} does not fit in 64 bits")
        return
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{value!r} at {path or '.'} is not a finite number")
        return
    if kind is list:
        for index, item in enumerate(value):
            _plain_json(item, f"{path}[{index}]", filterable=filterable)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise ValueError(f"key {key!r} at {path or '.'} is not a str")
            if filterable and "\x00" in key:
                raise ValueError(f"key {key!r} at {path or '.'} holds U+0000 (NUL)")
            _plain_json(item, f"{path}.{key}", filterable=filterable)
        return
    raise ValueError(
        f"{kind.__name__} at {path or '.'} in a field typed Any would not come back "
        "as the same type; use a typed field or plain JSON values"
    )


def dump_json(value: Any, what: str) -> str:
    """Compact JSON text of plain data (queue, metadata); SerializationError if it cannot be."""
    if not value and type(value) in (dict, list):
        return "{}" if type(value) is dict else "[]"
    try:
        _plain_json(value, filterable=True)
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        text.encode("utf-8")  # lone surrogates fail here, not in the driver
    except (ValueError, TypeError, RecursionError) as exc:
        raise SerializationError(f"{what} cannot be stored as JSON: {exc}") from exc
    return text


class _NotJson(ValueError):
    pass


def _refuse_constant(token: str) -> Any:
    raise _NotJson(f"the non-JSON constant {token}")


# One decoder for all stored text: json.loads(..., parse_constant=...) would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def decode_json_object(text: object, what: str) -> Any:
    """Parse stored JSON text (never a NaN/Infinity token); ValueError if it is not."""
    if not isinstance(text, str):
        raise ValueError(wrong_type(what, text, "JSON text"))
    if text == "{}":
        return {}
    if text == "[]":
        return []
    try:
        return _DECODER.decode(text)
    except _NotJson as exc:
        raise ValueError(f"{what} holds {exc}") from None
    except RecursionError:
        raise ValueError(f"{what} is {_TOO_DEEP}") from None


class EncodedCheckpoint(NamedTuple):
    """A checkpoint as stored: every field already JSON or text.

    A named tuple, not a frozen dataclass: every save builds one, and a tuple is
    built about 5x faster. The fields are in the column order of the backend's
    INSERT, so the row itself is the statement's parameters.
    """

    thread_id: str
    step: int
    node: str
    created_at: str
    queue: str
    metadata: str
    state: str
    state_version: int
    """The version of the state class that wrote ``state`` (see :mod:`forkpoint.versioning`)."""


class StateCodec(Generic[S]):
    """Encodes and decodes checkpoints of one state type.

    Built once per checkpointer; the strict serializer is derived from the
    state type's own pydantic core schema.
    """

    def __init__(self, state_type: type[S], *, max_state_bytes: int | None = None) -> None:
        if not (isinstance(state_type, type) and issubclass(state_type, StateSchema)):
            raise InvalidInput(f"state_type must be a StateSchema subclass, not {state_type!r}")
        if max_state_bytes is not None and (
            type(max_state_bytes) is not int or max_state_bytes <= 0
        ):
            raise InvalidInput(f"max_state_bytes must be a positive int, not {max_state_bytes!r}")
        self.state_type = state_type
        self.max_state_bytes = max_state_bytes
        self._serializer = strict_serializer(state_type, _plain_json)
        self._reader: StateReader[S] = StateReader(state_type)
        # Scanning JSON for NaN/Infinity costs ~1.5 µs per KB; states that cannot hold a
        # float (only str/int/bool/... fields) skip it on encode and decode alike.
        self._scan = may_hold_non_finite(core_schema(state_type))
        self.checkpoint_type = cast("type[Checkpoint[S]]", Checkpoint[state_type])  # type: ignore[valid-type]
        """``Checkpoint[state_type]``, the class every decoded checkpoint has."""
        self.graph_state_type = cast("type[GraphState[S]]", GraphState[state_type])  # type: ignore[valid-type]

    # --- state ------------------------------------------------------------------------------

    def encode_state(
        self, state: object, *, thread_id: str | None = None, step: int | None = None
    ) -> str:
        """JSON text of ``state``; InvalidInput / SerializationError before anything is written."""
        if not isinstance(state, self.state_type):
            raise InvalidInput(
                f"state must be a {self.state_type.__name__}, not {type(state).__name__}",
                thread_id=thread_id,
                step=step,
            )
        try:
            raw = self._serializer.to_json(state)
            bad = _non_finite_path(raw) if self._scan else None
        except (ValueError, RecursionError) as exc:  # PydanticSerializationError is a ValueError
            raise SerializationError(
                f"state cannot be stored as JSON: {exc}", thread_id=thread_id, step=step
            ) from exc
        if bad is not None:
            raise SerializationError(
                f"state holds NaN or infinity at {bad}; JSON cannot store it",
                thread_id=thread_id,
                step=step,
            )
        if self.max_state_bytes is not None and len(raw) > self.max_state_bytes:
            raise StateTooLarge(
                f"state is {len(raw)} bytes as JSON; max_state_bytes is {self.max_state_bytes}",
                thread_id=thread_id,
                step=step,
            )
        return raw.decode("utf-8")

    def decode_state(
        self,
        text: object,
        *,
        thread_id: str,
        step: int,
        path: str | None = None,
        version: int | None = None,
    ) -> S:
        """Stored state JSON of ``version`` (default: the class's), upgraded and validated.

        SerializationError if it is no JSON object; StateVersionError (one) if
        the class cannot read it (see :class:`~forkpoint.versioning.StateReader`).
        """
        try:
            if not isinstance(text, str):
                raise ValueError(wrong_type("state", text, "JSON text"))
            bad = _non_finite_path(text) if self._scan else None
            if bad is not None:
                raise ValueError(f"state holds a NaN/Infinity constant at {bad}")
        except ValueError as exc:
            raise SerializationError(
                f"stored state does not decode as {self.state_type.__name__}: {exc}",
                thread_id=thread_id,
                step=step,
                path=path,
            ) from exc
        return self._reader.read(
            text,
            self._reader.version if version is None else version,
            thread_id=thread_id,
            step=step,
            path=path,
        )

    # --- whole checkpoints ------------------------------------------------------------------

    def encode(self, checkpoint: object) -> EncodedCheckpoint:
        """Check and encode a checkpoint for storage; all failures are typed, nothing written."""
        if not isinstance(checkpoint, Checkpoint):
            raise InvalidInput(f"expected a Checkpoint, not {type(checkpoint).__name__}")
        thread_id = check_thread_id(checkpoint.thread_id)
        step = check_step(checkpoint.step)
        if not isinstance(checkpoint.state, GraphState):
            raise InvalidInput(
                "checkpoint.state must be a GraphState", thread_id=thread_id, step=step
            )
        if not isinstance(checkpoint.node, str):
            raise InvalidInput("checkpoint.node must be a str", thread_id=thread_id, step=step)
        created_at = checkpoint.created_at
        if not isinstance(created_at, datetime) or created_at.utcoffset() is None:
            raise InvalidInput(
                "created_at must be a timezone-aware datetime", thread_id=thread_id, step=step
            )
        try:
            stored_at = format_time(created_at)
        except InvalidInput as exc:
            raise InvalidInput(
                f"created_at: {exc.message}", thread_id=thread_id, step=step
            ) from None
        try:
            checkpoint.node.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SerializationError(
                "node name cannot be stored", thread_id=thread_id, step=step
            ) from exc
        if "\x00" in checkpoint.node:
            # Refused on every backend alike: PostgreSQL text cannot hold U+0000 at all.
            raise SerializationError(
                "node name holds U+0000 (NUL), which cannot be stored",
                thread_id=thread_id,
                step=step,
            )
        # The cheap checks above run first; serialising a large state is the costly part.
        queue = self._encode_queue(checkpoint.queue, thread_id, step)
        metadata = self.encode_metadata(checkpoint.metadata, thread_id=thread_id, step=step)
        state = self.encode_state(checkpoint.state.data, thread_id=thread_id, step=step)
        return EncodedCheckpoint(
            thread_id,
            step,
            checkpoint.node,
            stored_at,
            queue,
            metadata,
            state,
            checkpoint.state.data.stored_version  # JsonState writes back what it read
            if self._reader.any_version
            else self._reader.version,
        )

    def encode_save(
        self, checkpoint: object, thread_metadata: Mapping[str, Any] | None
    ) -> tuple[EncodedCheckpoint, str | None, str]:
        """What every backend's ``save`` stores: the row, the thread metadata (or None), and now."""
        row = self.encode(checkpoint)
        meta = (
            None
            if thread_metadata is None
            else self.encode_metadata(thread_metadata, thread_id=row.thread_id)
        )
        return row, meta, format_time(datetime.now(UTC))

    @staticmethod
    def _encode_queue(queue: object, thread_id: str, step: int) -> str:
        if type(queue) is list and not queue:
            return "[]"
        if not isinstance(queue, Sequence) or isinstance(queue, str):
            raise InvalidInput(
                "queue must be a list of (node, path_id) pairs", thread_id=thread_id, step=step
            )
        pairs = []
        for item in queue:
            if (
                not isinstance(item, Sequence)
                or isinstance(item, str)
                or len(item) != 2
                or not isinstance(item[0], str)
                or type(item[1]) is not int
                or not 0 <= item[1] < 2**63
            ):
                raise InvalidInput(
                    f"queue entry {item!r} is not a (node: str, path_id: int) pair",
                    thread_id=thread_id,
                    step=step,
                )
            pairs.append([item[0], item[1]])
        return dump_json(pairs, "queue")

    @staticmethod
    def encode_metadata(
        metadata: object, *, thread_id: str | None = None, step: int | None = None
    ) -> str:
        """JSON text of a metadata mapping (str keys, plain JSON values)."""
        if type(metadata) is dict and not metadata:
            return "{}"
        if not isinstance(metadata, Mapping):
            raise InvalidInput(
                f"metadata must be a mapping, not {type(metadata).__name__}",
                thread_id=thread_id,
                step=step,
            )
        try:
            return dump_json(dict(metadata), "metadata")
        except SerializationError as exc:
            raise SerializationError(exc.message, thread_id=thread_id, step=step) from exc.__cause__

    def decode(self, row: EncodedCheckpoint, *, path: str | None = None) -> Checkpoint[S]:
        """A fresh Checkpoint from a stored row; SerializationError naming thread and step.

        Every column is checked against its SQL type first (SQLite stores what
        it is given), so a crafted row never becomes a model holding wrong types.
        """
        step = row.step if type(row.step) is int else None
        try:
            _step(row.step, "step")
            _text(row.node, "node")
        except ValueError as exc:
            raise SerializationError(
                f"stored checkpoint does not decode: {exc}",
                thread_id=row.thread_id,
                step=step,
                path=path,
            ) from exc
        state = self.decode_state(
            row.state, thread_id=row.thread_id, step=row.step, path=path, version=row.state_version
        )
        try:
            queue = decode_queue(row.queue)
            metadata = decode_metadata(row.metadata)
            created_at = parse_time(row.created_at)
        except ValueError as exc:
            raise SerializationError(
                f"stored checkpoint does not decode: {exc}",
                thread_id=row.thread_id,
                step=row.step,
                path=path,
            ) from exc
        return construct(
            self.checkpoint_type,
            {
                "thread_id": row.thread_id,
                "state": construct(self.graph_state_type, {"data": state}),
                "step": row.step,
                "node": row.node,
                "queue": queue,
                "created_at": created_at,
                "metadata": metadata,
            },
        )


# --- stored columns: each checked against its SQL type before a model holds it --------------
# SQLite keeps whatever a crafted file stores ('abc' in an INTEGER column, a BLOB anywhere).
# These checks raise ValueError, which the readers turn into SerializationError for the row.


def _step(value: object, what: str) -> int:
    """A stored step or count: an INTEGER in 0 ≤ value ≤ MAX_STEP."""
    if type(value) is not int or not 0 <= value <= MAX_STEP:
        raise ValueError(f"{what} is stored as {value!r}, not an integer in 0..2**63-1")
    return value


def _text(value: object, what: str) -> str:
    """A stored TEXT column."""
    if type(value) is not str:
        raise ValueError(wrong_type(what, value, "text"))
    return value


def decode_metadata(text: object) -> dict[str, Any]:
    """Stored metadata JSON → dict; ValueError if it is not a JSON object."""
    value = decode_json_object(text, "metadata")
    if not isinstance(value, dict):
        raise ValueError("metadata is not a JSON object")
    return value


def decode_queue(text: object) -> list[tuple[str, int]]:
    """Stored queue JSON → a new ``[(node, path_id), ...]``; ValueError if it is not that.

    Listings decode one queue per row and most rows of a thread repeat a few
    queue texts, so parsed queues are remembered (a bounded cache of
    immutable tuples; each call returns a fresh list).
    """
    if text == "[]":
        return []
    found = _QUEUES.get(text) if isinstance(text, str) else None
    if found is None:
        value = decode_json_object(text, "queue")
        if not isinstance(value, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and type(p[1]) is int
            for p in value
        ):
            raise ValueError("queue is not a list of [node, path_id] pairs")
        found = tuple((p[0], p[1]) for p in value)
        if len(_QUEUES) >= _QUEUE_CACHE:
            _QUEUES.clear()
        _QUEUES[cast("str", text)] = found
    return list(found)


_QUEUE_CACHE = 1024
_QUEUES: dict[str, tuple[tuple[str, int], ...]] = {}


def thread_status(queue: object, metadata: object) -> ThreadStatus:
    """A thread's status from its latest row's queue and metadata text (see ThreadInfo)."""
    if not decode_queue(queue):
        return "done"
    if INTERRUPT_KEY in decode_metadata(metadata):
        return "interrupted"
    return "running"


def checkpoint_metadata(
    step: object, created_at: object, node: object, metadata: object, queue: object
) -> CheckpointMetadata:
    """A listing entry from stored columns (no state involved); ValueError for a damaged row."""
    return construct(
        CheckpointMetadata,
        {
            "step": _step(step, "step"),
            "created_at": parse_time(created_at),
            "node": _text(node, "node"),
            "queue": decode_queue(queue),
            "metadata": decode_metadata(metadata),
        },
    )


def thread_info(
    thread_id: object,
    created_at: object,
    updated_at: object,
    latest_step: object,
    checkpoint_count: object,
    parent_thread_id: object,
    parent_step: object,
    metadata: object,
    latest_node: object,
    latest_queue: object,
    latest_metadata: object,
) -> ThreadInfo:
    """A ThreadInfo from stored columns: the thread record and its latest row's node, queue, metadata.

    ValueError for a damaged row (a missing latest checkpoint included).
    """
    if latest_node is None:
        raise ValueError("the thread's latest checkpoint is missing")
    return construct(
        ThreadInfo,
        {
            "thread_id": _text(thread_id, "thread_id"),
            "created_at": parse_time(created_at),
            "updated_at": parse_time(updated_at),
            "latest_step": _step(latest_step, "latest_step"),
            "checkpoint_count": _step(checkpoint_count, "checkpoint_count"),
            "parent_thread_id": (
                None if parent_thread_id is None else _text(parent_thread_id, "parent_thread_id")
            ),
            "parent_step": None if parent_step is None else _step(parent_step, "parent_step"),
            "metadata": decode_metadata(metadata),
            "latest_node": _text(latest_node, "the latest checkpoint's node"),
            "status": thread_status(latest_queue, latest_metadata),
        },
    )
