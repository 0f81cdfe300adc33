"""One URL everywhere: :func:`open_checkpointer` picks the backend from a URL or a path.

* ``postgresql://…`` / ``postgres://…`` → :class:`~forkpoint.postgres.PostgresCheckpointer`
  (needs the ``forkpoint[postgres]`` extra, imported only then);
* ``sqlite:///relative.db``, ``sqlite:////absolute.db``, or a plain path
  (``str`` without ``://``, or ``os.PathLike``) → :class:`~forkpoint.SqliteCheckpointer`.

:class:`Opening` is what every ``open`` returns: await it for the checkpointer,
or use it with ``async with`` to have it closed at the end.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

from .base import HistoryCheckpointer
from .errors import InvalidInput
from .models import S

__all__ = ["POSTGRES_SCHEMES", "Opening", "open_checkpointer"]

C = TypeVar("C", bound=HistoryCheckpointer[Any])

POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"


class Opening(Generic[C]):
    """An ``open`` in progress: ``await`` it, or ``async with`` it (closed on exit)."""

    def __init__(self, opener: Callable[[], Awaitable[C]]) -> None:
        self._opener = opener
        self._opened: C | None = None

    def __await__(self) -> Generator[Any, None, C]:
        return self._opener().__await__()

    async def __aenter__(self) -> C:
        self._opened = await self._opener()
        return self._opened

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._opened is not None:
            await self._opened.close()


def _scheme(target: str) -> str:
    return target.split("://", 1)[0].lower() if "://" in target else ""


def open_checkpointer(
    target: str | os.PathLike[str], state_type: type[S], **options: Any
) -> Opening[HistoryCheckpointer[S]]:
    """Open the checkpointer ``target`` names: a PostgreSQL URL, an ``sqlite:///`` URL or a path.

    ``options`` are the chosen backend's ``open`` options (``durability``,
    ``keep_last``, ``read_only``, … and for PostgreSQL ``schema``,
    ``pool_size``, …); one the backend does not take is ``InvalidInput``, as
    is a URL of any other scheme.
    """
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if not isinstance(target, str):
        raise InvalidInput(f"expected a database URL or path, not {type(target).__name__}")
    scheme = _scheme(target)
    opener: Callable[..., Any]
    if scheme in POSTGRES_SCHEMES:
        try:
            from .postgres import PostgresCheckpointer
        except ImportError as exc:
            raise InvalidInput(
                "a postgresql:// URL needs the PostgreSQL extra: pip install 'forkpoint[postgres]'"
            ) from exc
        opener = PostgresCheckpointer.open
    elif scheme == "sqlite" or not scheme:
        from .sqlite import SqliteCheckpointer

        if scheme:
            if not target.startswith(SQLITE_PREFIX) or target == SQLITE_PREFIX:
                raise InvalidInput(
                    f"an SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, "
                    f"not {target!r}"
                )
            target = target[len(SQLITE_PREFIX) :]
        opener = SqliteCheckpointer.open
    else:
        raise InvalidInput(
            f"unknown database URL scheme {scheme!r}: use postgresql://…, sqlite:///… or a path"
        )
    accepted = set(inspect.signature(opener).parameters) - {"url", "path", "state_type"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InvalidInput(
            f"{opener.__qualname__.split('.')[0]} takes no option {', '.join(unknown)} "
            f"(it takes {', '.join(sorted(accepted))})"
        )
    path = target

    async def opened() -> HistoryCheckpointer[S]:
        checkpointer: HistoryCheckpointer[S] = await opener(path, state_type, **options)
        return checkpointer

    return Opening(opened)
