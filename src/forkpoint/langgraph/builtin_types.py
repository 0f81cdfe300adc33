"""The types every saver can store without registration (see ``registry.py`` for the format).

Standard library: ``datetime`` (with its zone: a ``ZoneInfo`` keeps its key),
``date``, ``time``, ``timedelta``, ``timezone``, ``UUID``, ``Decimal``, ``bytes``,
``bytearray``, ``tuple``, ``set``, ``frozenset``, ``deque``, ``PurePath``-family
paths. LangChain: every concrete message class and its chunk, ``Document``.
LangGraph: ``Interrupt``, ``Send``, ``Command``, ``Overwrite``,
``TimeoutPolicy`` and the snapshot a ``DeltaChannel`` stores. Entry names are
fixed strings; renaming one is a storage format change.
"""

from __future__ import annotations

import base64
import decimal
import importlib
import pathlib
import uuid
from collections import deque
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from langchain_core import messages as lc_messages
from langchain_core.documents import Document
from langgraph.types import Command, Interrupt, Overwrite, Send, TimeoutPolicy
from pydantic import BaseModel

from .registry import EXCEPTION_ENTRY, Entry, TypeRegistry, dataclass_entry, pydantic_entry

__all__ = ["default_registry"]


def _checked(kind: type, convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A decoder that first insists on the payload's JSON type (a forged row gets a clear error)."""

    def decode(payload: Any) -> Any:
        if type(payload) is not kind:
            raise TypeError(f"expected a JSON {kind.__name__}, got {type(payload).__name__}")
        return convert(payload)

    return decode


def _dt_encode(value: datetime) -> Any:
    if isinstance(value.tzinfo, ZoneInfo):
        return [value.replace(tzinfo=None).isoformat(), value.tzinfo.key, value.fold]
    return value.isoformat()


def _dt_decode(payload: Any) -> datetime:
    if type(payload) is str:
        return datetime.fromisoformat(payload)
    if type(payload) is list and len(payload) == 3:
        naive, key, fold = payload
        return datetime.fromisoformat(naive).replace(tzinfo=ZoneInfo(key), fold=int(fold))
    raise TypeError("a datetime is stored as ISO text or [naive ISO, zone key, fold]")


def _td_decode(payload: Any) -> timedelta:
    days, seconds, micros = payload
    return timedelta(days=days, seconds=seconds, microseconds=micros)


def _tz_encode(value: timezone) -> Any:
    offset = value.utcoffset(None)
    name = value.tzname(None)
    return [offset.total_seconds(), name]


def _tz_decode(payload: Any) -> timezone:
    seconds, name = payload
    return timezone(timedelta(seconds=seconds), name)


def _b64(value: bytes | bytearray) -> str:
    return base64.b64encode(value).decode("ascii")


def _unb64(payload: str) -> bytes:
    return base64.b64decode(payload.encode("ascii"), validate=True)


def _deque_decode(payload: Any) -> deque[Any]:
    items, maxlen = payload
    return deque(items, maxlen)


def _send_encode(send: Send) -> dict[str, Any]:
    data = {"node": send.node, "arg": send.arg}
    if send.timeout is not None:
        data["timeout"] = send.timeout
    return data


def _send_decode(payload: Any) -> Send:
    if type(payload) is not dict or type(payload.get("node")) is not str:
        raise TypeError("a Send is stored as {node, arg[, timeout]}")
    return Send(payload["node"], payload.get("arg"), timeout=payload.get("timeout"))


def _interrupt_encode(value: Interrupt) -> dict[str, Any]:
    data: dict[str, Any] = {"value": value.value, "id": value.id}
    schema = value.response_schema
    if schema is not None:
        if isinstance(schema, type) and issubclass(schema, BaseModel):
            schema = schema.model_json_schema()
        data["response_schema"] = schema
    return data


def _interrupt_decode(payload: Any) -> Interrupt:
    if type(payload) is not dict or type(payload.get("id")) is not str:
        raise TypeError("an Interrupt is stored as {value, id[, response_schema]}")
    return Interrupt(
        payload.get("value"), payload["id"], response_schema=payload.get("response_schema")
    )


def _path_entry(cls: type[pathlib.PurePath], name: str) -> Entry:
    return Entry(name, cls, str, _checked(str, cls))


_DELTA_SNAPSHOT: type | None = getattr(
    importlib.import_module("langgraph.checkpoint.serde.types"), "_DeltaSnapshot", None
)
"""What a ``DeltaChannel`` stores at its snapshots (langgraph-checkpoint 4.x; None before it)."""


def _delta_snapshot_entry(cls: type) -> Entry:
    def decode(payload: Any) -> Any:
        if type(payload) is not dict or set(payload) != {"value"}:
            raise TypeError("a delta snapshot is stored as {value}")
        return cls(payload["value"])

    return Entry("lg.DeltaSnapshot", cls, lambda snap: {"value": snap.value}, decode)


def _langchain_models() -> list[type[BaseModel]]:
    found = []
    for attr in sorted(dir(lc_messages)):
        cls = getattr(lc_messages, attr)
        if (
            isinstance(cls, type)
            and issubclass(cls, BaseModel)
            and issubclass(cls, lc_messages.BaseMessage)
            and cls not in (lc_messages.BaseMessage, lc_messages.BaseMessageChunk)
        ):
            found.append(cls)
    return [*found, Document]


def default_registry() -> TypeRegistry:
    """A new registry holding every built-in entry (a saver gets its own copy to extend)."""
    entries = [
        Entry("datetime", datetime, _dt_encode, _dt_decode),
        Entry("date", date, date.isoformat, _checked(str, date.fromisoformat)),
        Entry("time", time, time.isoformat, _checked(str, time.fromisoformat)),
        Entry(
            "timedelta",
            timedelta,
            lambda v: [v.days, v.seconds, v.microseconds],
            _checked(list, _td_decode),
        ),
        Entry("timezone", timezone, _tz_encode, _checked(list, _tz_decode)),
        Entry("zoneinfo", ZoneInfo, lambda v: v.key, _checked(str, ZoneInfo)),
        Entry("uuid", uuid.UUID, str, _checked(str, uuid.UUID)),
        Entry("decimal", decimal.Decimal, str, _checked(str, decimal.Decimal)),
        Entry("bytes", bytes, _b64, _checked(str, _unb64)),
        Entry("bytearray", bytearray, _b64, _checked(str, lambda s: bytearray(_unb64(s)))),
        Entry("tuple", tuple, list, _checked(list, tuple)),
        Entry("set", set, _sorted_items, _checked(list, set)),
        Entry("frozenset", frozenset, _sorted_items, _checked(list, frozenset)),
        Entry("deque", deque, lambda v: [list(v), v.maxlen], _checked(list, _deque_decode)),
        _path_entry(pathlib.PurePosixPath, "PurePosixPath"),
        _path_entry(pathlib.PureWindowsPath, "PureWindowsPath"),
        _path_entry(type(pathlib.Path()), "Path"),
        Entry("lg.Interrupt", Interrupt, _interrupt_encode, _interrupt_decode),
        Entry("lg.Send", Send, _send_encode, _send_decode),
        dataclass_entry(Command, "lg.Command"),
        dataclass_entry(Overwrite, "lg.Overwrite"),
        dataclass_entry(TimeoutPolicy, "lg.TimeoutPolicy"),
        EXCEPTION_ENTRY,
    ]
    if _DELTA_SNAPSHOT is not None:
        entries.append(_delta_snapshot_entry(_DELTA_SNAPSHOT))
    entries += [pydantic_entry(cls, f"lc.{cls.__name__}") for cls in _langchain_models()]
    return TypeRegistry(entries)


def _sorted_items(value: set[Any] | frozenset[Any]) -> list[Any]:
    """Set members in a stable order (by their text), so equal sets store equal text."""
    return sorted(value, key=repr)
