"""The type registry: how LangGraph channel values and writes become JSON, and back.

Format
------
A stored value is JSON text. JSON's own types are stored as themselves:
``str``, ``int``, finite ``float``, ``bool``, ``None``, ``list`` and ``dict`` with
string keys. Every other value is a *tagged object*, a JSON object with exactly
two keys::

    {"__fp__": "<entry name>", "v": <payload>}

``<entry name>`` names an entry of the registry (``"datetime"``,
``"lc.AIMessage"``, ``"Order"`` …) and the payload is again stored in this
format. Three names belong to the format itself:

* ``"dict"`` — a user dict that has a ``"__fp__"`` key of its own, escaped: its
  payload is the dict, whose keys are taken literally (so user data can never
  pose as a tagged object);
* ``"map"`` — a dict with non-string keys, as a list of ``[key, value]`` pairs;
* ``"float"`` — NaN and ±infinity, which JSON cannot spell (``"nan"``, ``"inf"``).

So ``json_extract(value, '$.v.content')`` reads a message's text in a
``sqlite3`` shell, and nothing needs Python to be inspected.

Invariants
----------
* **A tag names a registry entry, never code.** Loading looks the name up in
  this registry and nowhere else; no module is imported, no name resolved, no
  constructor named by the data called. An unknown name, a malformed tagged
  object or a payload the entry rejects is :class:`UndecodableValue`.
* **Registered pydantic models are rebuilt with validation**
  (``model_validate``), so a forged payload is checked like user input. Payloads
  shaped like LangChain's ``{"lc": 1, "type": "constructor", …}`` are plain
  dicts here and stay plain dicts.
* **What cannot come back as it went in is refused on save**, with
  :class:`UnregisteredType` naming the channel and the JSON path: a value whose
  *exact* type has no entry (a subclass of a registered class is not that
  class), a structure nested deeper than :data:`MAX_DEPTH` (which also catches
  cycles). Nothing is ever pickled, stringified or turned into a dict behind the
  user's back. The one documented exception is an exception object (LangGraph
  stores a failed task's error): it is stored as its type name and ``repr`` and
  read back as that ``repr`` string, as LangGraph's own savers do.
* Decoding bounds nesting too, so a hostile row cannot exhaust the stack.

Why a registry and not LangGraph's serializer: its msgpack format stores a
module and a class name for every object and imports and calls them on load;
that is code execution from a database row. Here the set of types that can be
built is fixed in code, by the application, before anything is read.

Entries for user classes are added with :meth:`TypeRegistry.register` (pydantic
models, dataclasses, enums; the entry name defaults to the class's qualified
name, so it survives refactors that move the class between modules) or walked
from a state schema with :meth:`TypeRegistry.register_schema`. Built-ins for
the standard library, LangChain and LangGraph live in ``builtin_types.py``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..errors import InvalidInput
from .errors import UndecodableValue, UnregisteredType, ValueCodecError

__all__ = [
    "EXCEPTION_ENTRY",
    "MAX_DEPTH",
    "TAG",
    "Entry",
    "TypeRegistry",
    "dataclass_entry",
    "pydantic_entry",
]

TAG = "__fp__"
"""The key that marks a tagged object."""
VALUE = "v"
MAX_DEPTH = 200
"""Deepest nesting a value may have, on save and on load."""

_FORMAT_NAMES = frozenset({"dict", "map", "float"})
_SCALARS = frozenset({str, int, float, bool, type(None)})
"""What JSON decodes to that needs no further decoding."""
_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@dataclass(frozen=True, slots=True)
class Entry:
    """One registered type: its stored name, and how to turn it into a payload and back.

    ``encode`` returns a payload in any form this registry can encode (it is
    encoded recursively); ``decode`` receives the decoded payload and returns the
    object, raising any exception to reject it. ``fields`` says that the payload
    is nothing but the object's ``__dict__`` and ``__pydantic_extra__`` (as
    :func:`pydantic_entry` makes it), so an object whose attributes are the
    same objects as before encodes to the same text (see ``reuse.py``).
    """

    name: str
    cls: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    fields: bool = False


class _Fail(Exception):
    """Raised inside the walk; each level adds its key on the way out (free on success)."""

    def __init__(self, message: str, *, unregistered: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.unregistered = unregistered
        self.keys: list[str | int] = []

    def where(self) -> str:
        parts = ["$"]
        for key in reversed(self.keys):
            if isinstance(key, int):
                parts.append(f"[{key}]")
            elif key.isidentifier():
                parts.append(f".{key}")
            else:
                parts.append(f"[{json.dumps(key, ensure_ascii=False)}]")
        return "".join(parts)


_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_ESCAPED = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


def _text(tree: Any) -> str:
    text = _COMPACT(tree)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: SQLite stores UTF-8, so escape them
            text = _ESCAPED(tree)
    return text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


class TypeRegistry:
    """Which types a saver can store, by name; see the module docstring for the rules."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._by_name: dict[str, Entry] = {}
        self._by_type: dict[type, Entry] = {}
        for entry in entries:
            self.add(entry)

    # --- registering ---------------------------------------------------------------------

    def copy(self) -> TypeRegistry:
        """An independent registry with the same entries."""
        return TypeRegistry(self._by_name.values())

    def add(self, entry: Entry) -> None:
        """Register ``entry``; a name or type registered differently is ``InvalidInput``."""
        if entry.name in _FORMAT_NAMES or not entry.name:
            raise InvalidInput(f"{entry.name!r} is reserved by the storage format")
        known = self._by_name.get(entry.name)
        if known is not None and known.cls is not entry.cls:
            raise InvalidInput(
                f"type registry name {entry.name!r} is already taken by {known.cls!r}; "
                f"register {entry.cls!r} with another name"
            )
        other = self._by_type.get(entry.cls)
        if other is not None and other.name != entry.name:
            raise InvalidInput(f"{entry.cls!r} is already registered as {other.name!r}")
        self._by_name[entry.name] = entry
        self._by_type[entry.cls] = entry

    def register(self, cls: type, *, name: str | None = None) -> str:
        """Register a pydantic model, dataclass or enum; returns its entry name.

        Registering the same class again is a no-op. The name defaults to the
        class's ``__qualname__``; pass ``name`` when two classes share one.
        """
        if not isinstance(cls, type):
            raise InvalidInput(f"register() needs a class, got {cls!r}")
        known = self._by_type.get(cls)
        if known is not None and name in (None, known.name):
            return known.name
        entry_name = name or cls.__qualname__
        if issubclass(cls, BaseModel):
            self.add(pydantic_entry(cls, entry_name))
        elif issubclass(cls, enum.Enum):
            self.add(Entry(entry_name, cls, _enum_value, cls))
        elif dataclasses.is_dataclass(cls):
            self.add(dataclass_entry(cls, entry_name))
        else:
            raise InvalidInput(
                f"{cls!r} is not a pydantic model, dataclass or enum; "
                "add an Entry with explicit encode/decode functions"
            )
        return entry_name

    def register_schema(self, schema: Any) -> list[str]:
        """Register every model, dataclass and enum a state schema mentions; returns their names.

        Walks TypedDicts, pydantic models, dataclasses and the arguments of
        ``Annotated``, ``Optional``/unions, ``list``, ``dict`` and the like.
        """
        found: list[str] = []
        self._walk(schema, found, set())
        return found

    def _walk(self, typ: Any, found: list[str], seen: set[int]) -> None:
        if id(typ) in seen or typ is None or typ is Any:
            return
        seen.add(id(typ))
        args = typing.get_args(typ)
        if typing.get_origin(typ) is not None or isinstance(typ, types.UnionType):
            for arg in args:
                if not isinstance(arg, str | int | bool | float | bytes):  # Literal values
                    self._walk(arg, found, seen)
            return
        if not isinstance(typ, type) or typ in self._by_type:
            return
        if typing.is_typeddict(typ):
            for hint in _hints(typ).values():
                self._walk(hint, found, seen)
        elif issubclass(typ, BaseModel | enum.Enum) or dataclasses.is_dataclass(typ):
            found.append(self.register(typ))
            for hint in _hints(typ).values():
                self._walk(hint, found, seen)

    def names(self) -> list[str]:
        """Every registered entry name, sorted."""
        return sorted(self._by_name)

    def entry_for(self, cls: type) -> Entry | None:
        """The entry that stores exactly ``cls``, if any."""
        return self._by_type.get(cls)

    def entries(self) -> list[Entry]:
        """Every registered entry, by name."""
        return [self._by_name[name] for name in sorted(self._by_name)]

    # --- encoding ------------------------------------------------------------------------

    def dumps(self, value: Any, *, channel: str | None = None) -> str:
        """``value`` as stored JSON text, or :class:`UnregisteredType` (nothing is written)."""
        return _text(self.to_json(value, channel=channel))

    def dumps_items(self, items: list[Any], *, channel: str | None = None) -> list[str]:
        """Each element of a list as stored JSON text.

        ``"[" + ",".join(result) + "]"`` is exactly ``dumps(items)``, so a list can
        be stored element by element and read back as one text.
        """
        return [self.dumps_item(item, index, channel=channel) for index, item in enumerate(items)]

    def to_json(self, value: Any, *, channel: str | None = None) -> Any:
        """``value`` as a JSON-compatible tree in the stored format."""
        try:
            return self._enc(value, 0)
        except _Fail as fail:
            kind = UnregisteredType if fail.unregistered else ValueCodecError
            raise kind(fail.message, channel=channel, where=fail.where()) from None

    def _enc(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is str or t is int or t is bool or value is None:
            return value
        if t is float:
            return value if math.isfinite(value) else {TAG: "float", VALUE: repr(value)}
        if depth >= MAX_DEPTH:
            raise _Fail(f"value nested deeper than {MAX_DEPTH} levels (or circular)")
        # Strings, ints, bools and None inside a dict or list are taken as they are without a
        # call each: most of a checkpoint's nodes are such leaves (versions, ids, names).
        if t is dict:
            out: dict[str, Any] = {}
            for key, item in value.items():
                if type(key) is not str:
                    return {TAG: "map", VALUE: self._enc_pairs(value, depth)}
                leaf = type(item)
                if leaf is str or leaf is int or leaf is bool or item is None:
                    out[key] = item
                    continue
                try:
                    out[key] = self._enc(item, depth + 1)
                except _Fail as fail:
                    fail.keys.append(key)
                    raise
            return {TAG: "dict", VALUE: out} if TAG in out else out
        if t is list:
            items: list[Any] = []
            for index, item in enumerate(value):
                leaf = type(item)
                if leaf is str or leaf is int or leaf is bool or item is None:
                    items.append(item)
                    continue
                try:
                    items.append(self._enc(item, depth + 1))
                except _Fail as fail:
                    fail.keys.append(index)
                    raise
            return items
        entry = self._by_type.get(t)
        if entry is None:
            if isinstance(value, BaseException):
                entry = EXCEPTION_ENTRY
            else:
                raise _Fail(
                    f"cannot store a value of type {t.__module__}.{t.__qualname__}: it is not "
                    "in the saver's type registry (register it, or name it in the state schema)",
                    unregistered=True,
                )
        return {TAG: entry.name, VALUE: self._enc(entry.encode(value), depth + 1)}

    def _enc_pairs(self, value: dict[Any, Any], depth: int) -> list[Any]:
        pairs: list[Any] = []
        for key, item in value.items():
            try:
                pairs.append([self._enc(key, depth + 2), self._enc(item, depth + 2)])
            except _Fail as fail:
                fail.keys.append(repr(key))
                raise
        return pairs

    def dumps_item(self, item: Any, index: int, *, channel: str | None = None) -> str:
        """Element ``index`` of a list value as stored JSON text (see :meth:`dumps_items`)."""
        try:
            tree = self._enc(item, 1)
        except _Fail as fail:
            fail.keys.append(index)
            kind = UnregisteredType if fail.unregistered else ValueCodecError
            raise kind(fail.message, channel=channel, where=fail.where()) from None
        return _text(tree)

    # --- decoding ------------------------------------------------------------------------

    def loads(self, text: str | bytes, *, channel: str | None = None) -> Any:
        """A stored value back; anything forkpoint would not have written is ``UndecodableValue``."""
        try:
            tree = json.loads(text, parse_constant=_reject_constant)
        except (ValueError, RecursionError, TypeError) as exc:
            raise UndecodableValue(
                f"stored value is not valid JSON ({exc})", channel=channel
            ) from None
        return self.from_json(tree, channel=channel)

    def load_item(self, text: str, index: int, *, channel: str | None = None) -> Any:
        """Element ``index`` of a list value stored element by element (see :meth:`loads`)."""
        try:
            tree = _DECODER.decode(text)
        except (ValueError, RecursionError, TypeError) as exc:
            raise UndecodableValue(
                f"stored value is not valid JSON ({exc})", channel=channel, where=f"$[{index}]"
            ) from None
        try:
            return self._dec(tree, 1)
        except _Fail as fail:
            fail.keys.append(index)
            raise UndecodableValue(fail.message, channel=channel, where=fail.where()) from None

    def from_json(self, tree: Any, *, channel: str | None = None) -> Any:
        """Decode a JSON tree in the stored format (see :meth:`loads`)."""
        try:
            return self._dec(tree, 0)
        except _Fail as fail:
            raise UndecodableValue(fail.message, channel=channel, where=fail.where()) from None

    def _dec(self, value: Any, depth: int) -> Any:
        t = type(value)
        if t is list:
            if depth >= MAX_DEPTH:
                raise _Fail(f"stored value nested deeper than {MAX_DEPTH} levels")
            items: list[Any] = []
            for index, item in enumerate(value):
                if type(item) in _SCALARS:
                    items.append(item)
                    continue
                try:
                    items.append(self._dec(item, depth + 1))
                except _Fail as fail:
                    fail.keys.append(index)
                    raise
            return items
        if t is not dict:
            return value
        if depth >= MAX_DEPTH:
            raise _Fail(f"stored value nested deeper than {MAX_DEPTH} levels")
        if TAG in value:
            return self._dec_tagged(value, depth)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(item) in _SCALARS:
                out[key] = item
                continue
            try:
                out[key] = self._dec(item, depth + 1)
            except _Fail as fail:
                fail.keys.append(key)
                raise
        return out

    def _dec_tagged(self, value: dict[str, Any], depth: int) -> Any:
        name = value[TAG]
        if len(value) != 2 or VALUE not in value or type(name) is not str:
            raise _Fail(f"malformed tagged object (keys {sorted(value)!r})")
        payload = value[VALUE]
        if name == "dict":
            if type(payload) is not dict:
                raise _Fail("an escaped dict must hold an object")
            return {key: self._dec(item, depth + 1) for key, item in payload.items()}
        if name == "float":
            if payload not in _FLOATS:
                raise _Fail(f"unknown float constant {payload!r}")
            return _FLOATS[payload]
        if name == "map":
            return self._dec_map(payload, depth)
        entry = self._by_name.get(name)
        if entry is None:
            raise _Fail(f"stored type {name!r} is not in the saver's type registry")
        decoded = self._dec(payload, depth + 1)
        try:
            return entry.decode(decoded)
        except Exception as exc:  # noqa: BLE001 - any rejection by an entry is the row's fault: report it typed
            raise _Fail(f"stored {name!r} does not validate: {exc}") from None

    def _dec_map(self, payload: Any, depth: int) -> dict[Any, Any]:
        if type(payload) is not list:
            raise _Fail("a map must hold a list of pairs")
        out: dict[Any, Any] = {}
        for pair in payload:
            if type(pair) is not list or len(pair) != 2:
                raise _Fail("a map pair must be a [key, value] list")
            key = self._dec(pair[0], depth + 2)
            try:
                out[key] = self._dec(pair[1], depth + 2)
            except TypeError:
                raise _Fail(f"map key {key!r} is not hashable") from None
        return out


# --- entry builders --------------------------------------------------------------------------


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward references: walk what resolves
        return dict(getattr(cls, "__annotations__", {}))


def _enum_value(member: enum.Enum) -> Any:
    return member.value


def pydantic_entry(cls: type[BaseModel], name: str) -> Entry:
    """An entry storing a model's fields by name (defaults left out) and validating on load.

    Fields are read one by one rather than through ``model_dump`` so that a
    nested model, datetime or set keeps its own tag instead of being flattened.
    Private attributes and computed fields are not stored.
    """
    plain_defaults = {
        field: info.default
        for field, info in cls.model_fields.items()
        if info.default is not PydanticUndefined and info.default_factory is None
    }
    fields = tuple(cls.model_fields)

    def encode(model: BaseModel) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for field in fields:
            item = getattr(model, field)
            if field in plain_defaults:
                default = plain_defaults[field]
                if item is default or (type(item) is type(default) and item == default):
                    continue
            data[field] = item
        if model.__pydantic_extra__:
            data.update(model.__pydantic_extra__)
        return data

    def decode(data: Any) -> BaseModel:
        if type(data) is not dict:
            raise TypeError("a model is stored as an object of its fields")
        return cls.model_validate(data, by_alias=False, by_name=True)

    return Entry(name, cls, encode, decode, fields=True)


def dataclass_entry(cls: type, name: str) -> Entry:
    """An entry storing a dataclass's ``init`` fields by name and calling the class on load."""
    names = tuple(f.name for f in dataclasses.fields(cls) if f.init)

    def encode(obj: Any) -> dict[str, Any]:
        return {field: getattr(obj, field) for field in names}

    def decode(data: Any) -> Any:
        if type(data) is not dict or not set(data) <= set(names):
            raise TypeError(f"{name} is stored as an object of its fields {names!r}")
        return cls(**data)

    return Entry(name, cls, encode, decode)


def _exception_payload(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__qualname__, "repr": repr(exc)}


def _exception_text(data: Any) -> str:
    if type(data) is not dict or type(data.get("repr")) is not str:
        raise TypeError("an exception is stored as {type, repr}")
    return str(data["repr"])


EXCEPTION_ENTRY = Entry("exception", BaseException, _exception_payload, _exception_text)
