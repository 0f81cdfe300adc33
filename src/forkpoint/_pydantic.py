"""Every pydantic interface forkpoint uses beyond pydantic's documented model API, held here.

Four things, each needed for a reason, each guarded by tests that fail when a
pydantic release changes what they rely on:

* **``SchemaSerializer(..., _use_prebuilt=False)``** (a private keyword of
  pydantic-core, from 2.46 / pydantic 2.13, the floor in pyproject.toml).
  pydantic-core reuses a completed model's own ("prebuilt") serializer for a
  nested ``model`` schema, which would skip every strict check that
  :func:`strict_serializer` adds to the schema, the top-level model included.
  Without the keyword the strict checks would be lost silently, so there is no
  fallback: a release that drops it makes every codec fail to build (every
  save test fails), one that ignores it fails
  ``tests/reliability/test_hardening_rows.py::test_strict_encoding_reaches_nested_models``
  and ``tests/contract/test_bad_input.py::test_state_json_cannot_hold_is_refused_naming_the_field``.
* **Reading and rewriting core schemas** (:func:`strict_serializer`,
  :func:`may_hold_non_finite`). The core-schema dictionaries are pydantic-core's
  public types, but their layout (``fields``, ``items_schema``,
  ``values_schema``, the node ``type`` names) is what the rewrite follows to
  put a plain-JSON check on every ``Any`` position and write NaN/infinity as
  tokens that the codec then refuses (pydantic alone writes ``null``). A
  renamed key would leave a position unchecked: the same two tests fail. An
  unknown node type counts as "may hold a float", so a new type costs a scan,
  never a missed NaN.
* **Writing ``__dict__`` and the ``__pydantic_*__`` slots directly**
  (:func:`construct`). Listings build thousands of models from rows already
  checked by the codec; ``model_construct`` spends most of its time on default
  handling a complete row does not need. The result must equal
  ``model_construct``'s in every observable way:
  ``tests/reliability/test_hardening_rows.py::test_the_fast_constructor_builds_what_model_construct_builds``
  and ``tests/storage/test_construct.py`` fail if pydantic adds or renames an
  instance slot. :func:`rebuild` does the same for the LangGraph saver, which
  hands out copies of models it decoded (and validated) before instead of
  validating the same stored text again; it must equal ``model_copy(deep=True)``:
  ``tests/langgraph/test_reuse.py::test_a_clone_is_equal_independent_and_shares_only_immutable_leaves``.

* **A reading validator rebuilt from a rewritten core schema**
  (:func:`reading_validator`, ``SchemaValidator(..., _use_prebuilt=False)``).
  pydantic's default for a nested ``BaseModel``, dataclass or TypedDict that
  says nothing about ``extra`` is to drop unknown keys; a stored state must
  not lose data that way, so the validator that reads stored states forbids
  them unless the model chose ``extra`` itself. The rewrite follows the
  layout of ``config.extra_fields_behavior`` (model and dataclass nodes) and
  ``extra_behavior`` (typed-dict and dataclass-args nodes);
  ``_use_prebuilt=False`` keeps pydantic-core from reusing the nested models'
  own validators. If a release changes either, the nested-model tests of
  ``tests/versioning/test_reader.py`` fail (keys dropped again, or the
  validators disagreeing with pydantic's on recursion, unions or validators).

No other module of forkpoint names a private pydantic interface
(``test_every_pydantic_internal_is_held_in_one_module`` checks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import SchemaSerializer, SchemaValidator

__all__ = [
    "construct",
    "core_schema",
    "has_private",
    "may_hold_non_finite",
    "reading_validator",
    "rebuild",
    "strict_serializer",
]

M = TypeVar("M", bound=BaseModel)


def core_schema(cls: type[BaseModel]) -> Any:
    """The pydantic-core schema of a completed model class."""
    return cls.__pydantic_core_schema__


# --- reading core schemas -------------------------------------------------------------------

# Core-schema node types that can neither produce nor accept a NaN/Infinity token.
_NO_FLOAT_TYPES = frozenset(
    {
        "str", "int", "bool", "none", "literal", "enum", "uuid", "url", "multi-host-url", "bytes",
        "datetime", "date", "time", "model", "model-fields", "model-field", "typed-dict",
        "typed-dict-field", "dataclass", "dataclass-args", "dataclass-field", "list", "tuple",
        "set", "frozenset", "dict", "nullable", "default", "definitions", "definition-ref",
        "union", "tagged-union", "lax-or-strict",
    }
)  # fmt: skip


def may_hold_non_finite(schema: Any) -> bool:
    """Whether data of this core schema can contain a float (so NaN/Infinity need a scan).

    Conservative: any type not known to be float-free, any custom serializer
    function, and any model accepting extra fields count as "may".
    """
    if isinstance(schema, list):
        return any(may_hold_non_finite(item) for item in schema)
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if isinstance(kind, str) and kind not in _NO_FLOAT_TYPES:
        return True
    config = schema.get("config")
    if isinstance(config, dict) and config.get("extra_fields_behavior") == "allow":
        return True
    return any(
        may_hold_non_finite(value)
        for key, value in schema.items()
        if key not in ("metadata", "config", "cls", "ref", "schema_ref") and key != "type"
    )


# --- the strict serializer ------------------------------------------------------------------

AnyCheck = Callable[[Any, str], None]
"""Raises ValueError unless a value at a field path (``.a[2].b``) is plain JSON."""


def _any_checker(check: AnyCheck, field: str) -> Callable[[Any], Any]:
    def serialize(value: Any) -> Any:
        check(value, field)
        return value

    return serialize


def _strict(schema: Any, check: AnyCheck, path: str = "") -> Any:
    """A copy of a core schema that serialises without silent data changes.

    Every model/dataclass writes NaN and ±inf as JSON constants (which the
    codec then finds and refuses) instead of ``null``, and every ``Any``
    position runs ``check``; ``path`` (``.field[].key``) names the position.
    """
    if isinstance(schema, list):
        return [_strict(item, check, path) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "fields" and isinstance(value, dict):  # model-fields, typed-dict
            out[key] = {name: _strict(sub, check, f"{path}.{name}") for name, sub in value.items()}
        elif key == "fields" and isinstance(value, list):  # dataclass-args
            out[key] = [
                _strict(sub, check, f"{path}.{sub.get('name')}") if isinstance(sub, dict) else sub
                for sub in value
            ]
        elif key == "items_schema":
            out[key] = _strict(value, check, f"{path}[]")
        elif key == "values_schema":
            out[key] = _strict(value, check, f"{path}.*")
        else:
            out[key] = _strict(value, check, path)
    kind = out.get("type")
    if kind in ("model", "dataclass", "typed-dict"):
        out["config"] = {**out.get("config", {}), "ser_json_inf_nan": "constants"}
    elif kind == "any" and "serialization" not in out:
        out["serialization"] = {
            "type": "function-plain",
            "function": _any_checker(check, path),
            "info_arg": False,
            "return_schema": {"type": "any"},
        }
    elif kind in ("list", "set", "frozenset", "generator") and "items_schema" not in out:
        out["items_schema"] = _strict({"type": "any"}, check, f"{path}[]")
    elif kind == "dict":
        out.setdefault("values_schema", _strict({"type": "any"}, check, f"{path}.*"))
    return out


def strict_serializer(cls: type[BaseModel], check_any: AnyCheck) -> SchemaSerializer:
    """A serializer of ``cls`` that writes NaN/±inf as tokens and runs ``check_any`` on ``Any`` data.

    Every level is built from the rewritten schema (``_use_prebuilt=False``):
    see the module docstring.
    """
    return SchemaSerializer(_strict(core_schema(cls), check_any), _use_prebuilt=False)


# --- fast construction ----------------------------------------------------------------------

_FIELDS_SETS: dict[type[BaseModel], set[str]] = {}


def _fields_set(cls: type[BaseModel]) -> set[str]:
    found = _FIELDS_SETS.get(cls)
    if found is None:
        found = _FIELDS_SETS[cls] = set(cls.model_fields)
    return found


def construct(cls: type[M], values: dict[str, Any]) -> M:
    """``cls.model_construct(**values)`` for already-valid values naming every field.

    Every field is named, so all instances of a class share one fields set;
    ``model_copy`` copies it before changing it, and assigning a field of a
    mutable model (Checkpoint) only adds a name the set already holds.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", _fields_set(cls))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def has_private(model: BaseModel) -> bool:
    """Whether ``model`` holds private attributes (which :func:`rebuild` does not copy)."""
    return getattr(model, "__pydantic_private__", None) is not None


def rebuild(model: M, fields: dict[str, Any], extra: dict[str, Any] | None) -> M:
    """A model of ``model``'s class holding ``fields`` and ``extra`` (copies the caller made),
    with a copy of its fields set and no private attributes (see :func:`has_private`)."""
    cls = type(model)
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", fields)
    object.__setattr__(obj, "__pydantic_fields_set__", set(model.__pydantic_fields_set__))
    object.__setattr__(obj, "__pydantic_extra__", extra)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


# --- the validator that reads stored states ----------------------------------------------------


def _implicit_extra_forbidden(schema: Any) -> tuple[Any, bool]:
    """A copy of a core schema in which models that never chose ``extra`` forbid unknown keys.

    Returns the copy and whether anything changed.
    """
    changed = False

    def walk(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: walk(value) for key, value in node.items()}
        kind = out.get("type")
        config = out.get("config")
        chosen = isinstance(config, dict) and "extra_fields_behavior" in config
        if kind in ("model", "dataclass") and not chosen:
            out["config"] = {**(config or {}), "extra_fields_behavior": "forbid"}
            changed = True
        elif (
            kind in ("typed-dict", "dataclass-args") and not chosen and "extra_behavior" not in out
        ):
            out["extra_behavior"] = "forbid"
            changed = True
        return out

    return walk(schema), changed


def reading_validator(cls: type[BaseModel]) -> SchemaValidator:
    """The validator stored states of ``cls`` are read with: no nested model drops unknown keys.

    The class's own validator when no nested model leaves ``extra`` unchosen
    (the common case costs nothing), else one rebuilt from the rewritten schema.
    """
    schema, changed = _implicit_extra_forbidden(core_schema(cls))
    if not changed:
        return cls.__pydantic_validator__  # type: ignore[return-value]
    return SchemaValidator(schema, _use_prebuilt=False)
