"""Versioned state classes: how a class declares its version, and how a stored state is upgraded.

A thread outlives the code that wrote it. A state class therefore declares a
version and, for every older version, a step that upgrades the stored JSON
object of version N to version N + 1::

    class Ticket(StateSchema, version=2):
        headline: str

        @upgrade_from(1)
        def title_becomes_headline(state: dict[str, Any]) -> dict[str, Any]:
            state["headline"] = state.pop("title")
            return state

The chain ``1 → 2 → … → version`` is checked when the class is defined (a
missing, duplicated or out-of-range step is ``InvalidInput`` there, not when
some old thread is loaded). Every stored checkpoint records the version that
wrote it; reading applies the steps from that version up, then validates with
the class. A row written by a newer version, a step that fails, and a stored
key the class does not know all raise :class:`~forkpoint.errors.StateVersionError`
naming thread, step, stored and current version: no state is ever
default-filled, and no stored key is dropped unless the class says
``extra="ignore"``.

This module knows nothing of storage: ``models.StateSchema`` calls
:func:`declare_version` when a class is defined, and the codec reads stored
text through a :class:`StateReader`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from pydantic import BaseModel, ValidationError

from ._pydantic import reading_validator
from .errors import InvalidInput, SerializationError, StateVersionError

if TYPE_CHECKING:
    from .models import StateSchema

__all__ = [
    "StateReader",
    "UpgradeStep",
    "declare_version",
    "upgrade_from",
    "upgrade_state",
]

UpgradeStep = Callable[[dict[str, Any]], dict[str, Any]]
"""A pure function from the stored JSON object of version N to the object of version N + 1."""

_FROM = "__forkpoint_upgrade_from__"

# How pydantic reports a key the model does not declare (models and TypedDicts; dataclasses).
_UNKNOWN_KEY_ERRORS = frozenset({"extra_forbidden", "unexpected_keyword_argument"})

M = TypeVar("M", bound=BaseModel)


def _check_version(value: object, what: str) -> int:
    if type(value) is not int or value < 1:  # bool is an int subclass and is no version
        raise InvalidInput(f"{what} must be an int ≥ 1, not {value!r}")
    return value


def upgrade_from(
    version: int,
) -> Callable[[UpgradeStep], staticmethod[[dict[str, Any]], dict[str, Any]]]:
    """Declare, in a state class's body, the step that upgrades a stored state of ``version``.

    The decorated function receives the stored JSON object (a ``dict`` of
    plain JSON values, freshly parsed: it may change it in place) as written by
    version ``version`` of the class, and returns the object as version
    ``version + 1`` stores it. It must not depend on anything but its argument:
    it runs on every read of an older row, and ``check_states`` runs it ahead
    of a deploy. The function stays callable as a static method of the class,
    so it can be tested on its own.
    """
    number = _check_version(version, "upgrade_from's version")

    def register(fn: UpgradeStep) -> staticmethod[[dict[str, Any]], dict[str, Any]]:
        func = fn.__func__ if isinstance(fn, staticmethod) else fn
        if isinstance(fn, classmethod) or not callable(func):
            raise InvalidInput(
                f"@upgrade_from({number}) decorates a plain function of the stored object, "
                f"not {fn!r}"
            )
        setattr(func, _FROM, number)
        return staticmethod(func)

    return register


def declare_version(cls: type[BaseModel], version: object) -> tuple[int, dict[int, UpgradeStep]]:
    """The version and upgrade steps of a state class being defined; InvalidInput if they do not chain.

    ``version=None`` (the keyword left out) inherits the parent's version and
    steps; declaring steps then is an error, since they would upgrade to a
    version the class does not claim. Steps are inherited from base classes,
    and a subclass may replace one by declaring the same ``from`` version.
    """
    name = cls.__name__
    inherited: dict[int, UpgradeStep] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited.update(getattr(base, "_upgrade_steps", None) or {})
    own: dict[int, UpgradeStep] = {}
    for attr, value in vars(cls).items():
        func = value.__func__ if isinstance(value, staticmethod) else None
        number = getattr(func, _FROM, None)
        if number is None:
            continue
        if number in own:
            raise InvalidInput(
                f"{name} declares two upgrade steps from version {number}: "
                f"{getattr(own[number], '__name__', '?')} and {attr}"
            )
        own[number] = cast("UpgradeStep", func)
    if version is None:
        current = int(getattr(cls, "state_version", 1))
        if own:
            raise InvalidInput(
                f"{name} declares upgrade steps but no version; "
                f"declare it as class {name}(..., version=N)"
            )
    else:
        current = _check_version(version, f"the version of {name}")
    steps = {**inherited, **own}
    beyond = sorted(n for n in steps if n >= current)
    if beyond:
        raise InvalidInput(
            f"{name} is version {current}, but has upgrade steps from version(s) "
            f"{', '.join(map(str, beyond))}; a step from N upgrades to N + 1 ≤ {current}"
        )
    missing = [n for n in range(1, current) if n not in steps]
    if missing:
        raise InvalidInput(
            f"{name} is version {current} but has no upgrade step from version(s) "
            f"{', '.join(map(str, missing))}; add @upgrade_from(N) for each, so that threads "
            "stored by every older version still load"
        )
    return current, {n: steps[n] for n in range(1, current)}


def _step_name(fn: UpgradeStep) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))


def _check_stored_version(
    stored_version: object, thread_id: str | None, step: int | None, path: str | None
) -> None:
    """Refuse a stored version that is not an int ≥ 1 (a damaged or forged row)."""
    if type(stored_version) is not int or stored_version < 1:
        raise SerializationError(
            f"stored state version {stored_version!r} is not a version (an int ≥ 1)",
            thread_id=thread_id,
            step=step,
            path=path,
        )


def upgrade_state(
    state_type: type[StateSchema],
    data: object,
    stored_version: int,
    *,
    thread_id: str | None = None,
    step: int | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """Apply ``state_type``'s upgrade steps to a stored JSON object of ``stored_version``.

    Returns the object as the current version stores it (``data`` itself when
    the version is current). Raises ``StateVersionError`` for a version newer
    than the class, a step that raises, or a step that returns anything but a
    JSON object; ``SerializationError`` if ``data`` is not a JSON object.
    """
    current = state_type.state_version
    where: dict[str, Any] = {
        "thread_id": thread_id,
        "step": step,
        "path": path,
        "state_type": state_type.__name__,
        "stored_version": stored_version,
        "current_version": current,
    }
    _check_stored_version(stored_version, thread_id, step, path)
    if stored_version > current:
        raise StateVersionError(
            f"stored state is version {stored_version} of {state_type.__name__}, newer than "
            f"this class (version {current}); read it with the code that wrote it, "
            "or a newer one",
            **where,
        )
    if not isinstance(data, dict):
        raise SerializationError(
            f"stored state is a JSON {type(data).__name__}, not an object",
            thread_id=thread_id,
            step=step,
            path=path,
        )
    steps = state_type._upgrade_steps
    for number in range(stored_version, current):
        fn = steps[number]
        try:
            data = fn(data)
        except Exception as exc:  # any failure of user code becomes the typed error
            raise StateVersionError(
                f"upgrade step {number} → {number + 1} of {state_type.__name__} "
                f"({_step_name(fn)}) failed: {exc!r}",
                failed_step=number,
                **where,
            ) from exc
        if not isinstance(data, dict):
            raise StateVersionError(
                f"upgrade step {number} → {number + 1} of {state_type.__name__} "
                f"({_step_name(fn)}) returned {type(data).__name__}, not a JSON object (dict)",
                failed_step=number,
                **where,
            )
    return data


class StateReader(Generic[M]):
    """Reads stored state text of any version as an instance of the current class.

    Built once per checkpointer. A row of the current version costs exactly
    one ``validate_json``, as it did before versions existed; older rows are
    parsed, upgraded step by step and validated.
    """

    def __init__(self, state_type: type[StateSchema]) -> None:
        self.state_type = state_type
        self.version: int = state_type.state_version
        self.any_version: bool = bool(getattr(state_type, "_reads_any_version", False))
        # Nested models that never chose ``extra`` would drop unknown stored keys.
        self._validator = reading_validator(state_type)

    def read(
        self,
        text: str,
        stored_version: int,
        *,
        thread_id: str | None = None,
        step: int | None = None,
        path: str | None = None,
    ) -> M:
        """The state stored as ``text`` by ``stored_version``, upgraded and validated.

        Raises ``StateVersionError`` (see :func:`upgrade_state`) or, for text
        that is no JSON object, ``SerializationError``; never returns a state
        that lost a stored key the class did not opt out of.
        """
        if stored_version == self.version:
            upgraded = False  # the hot path: a current row is validated as stored
        elif self.any_version:
            _check_stored_version(stored_version, thread_id, step, path)
            upgraded = False
        else:
            try:
                data = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise SerializationError(
                    f"stored state is not JSON: {exc}", thread_id=thread_id, step=step, path=path
                ) from exc
            data = upgrade_state(
                self.state_type, data, stored_version, thread_id=thread_id, step=step, path=path
            )
            try:
                text = json.dumps(data, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise StateVersionError(
                    f"the upgrade steps of {self.state_type.__name__} from version "
                    f"{stored_version} returned a value JSON cannot hold: {exc}",
                    thread_id=thread_id,
                    step=step,
                    path=path,
                    state_type=self.state_type.__name__,
                    stored_version=stored_version,
                    current_version=self.version,
                    failed_step=self.version - 1,
                ) from exc
            upgraded = True
        try:
            state = cast("M", self._validator.validate_json(text))
        except ValidationError as exc:
            raise self._mismatch(exc, stored_version, upgraded, thread_id, step, path) from exc
        except RecursionError as exc:  # JSON nested past the stack: damage, not a version matter
            raise SerializationError(
                f"stored state does not decode as {self.state_type.__name__}: it nests too deeply",
                thread_id=thread_id,
                step=step,
                path=path,
            ) from exc
        if self.any_version:  # JsonState: remembers the version, so writing it back keeps it
            state._stored_version = stored_version  # type: ignore[attr-defined]
        return state

    def _mismatch(
        self,
        exc: ValidationError,
        stored_version: int,
        upgraded: bool,
        thread_id: str | None,
        step: int | None,
        path: str | None,
    ) -> StateVersionError:
        name, current = self.state_type.__name__, self.version
        unknown = tuple(
            ".".join(str(part) for part in error["loc"])
            for error in exc.errors()
            if error["type"] in _UNKNOWN_KEY_ERRORS
        )
        after = f" after upgrading it from version {stored_version}" if upgraded else ""
        if unknown:
            message = (
                f"stored state (version {stored_version}) holds keys that {name} version "
                f"{current} does not know{after}: {', '.join(unknown)}; they are not dropped "
                f"silently: raise the version of {name} and add an upgrade step "
                f"(@upgrade_from({current})) that moves or removes them, or set "
                "extra='ignore' on the model to drop unknown keys"
            )
        else:
            message = (
                f"stored state (version {stored_version}) does not validate as {name} version "
                f"{current}{after}: {exc}"
                + (
                    ""
                    if upgraded
                    else f"; if {name} changed since this row was written, raise its version "
                    "and add an upgrade step"
                )
            )
        return StateVersionError(
            message,
            thread_id=thread_id,
            step=step,
            path=path,
            state_type=name,
            stored_version=stored_version,
            current_version=current,
            unknown_keys=unknown,
        )
