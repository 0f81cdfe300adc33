"""The async checkpointer interface, every call made through ``forkpoint.sync``'s plain calls.

``tests/conftest.py`` lists this as a backend, so the whole contract suite (and
every suite that takes ``make_checkpointer``) drives the sync face: each async
call the tests make runs the matching sync method in a worker thread, which
submits it to the sync checkpointer's private loop.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Self, cast

from forkpoint import HistoryCheckpointer
from forkpoint.sync import SyncCheckpointer

__all__ = ["AsyncOverSync", "over_sync"]


_MISSING = object()


class _ForwardingClass(type):
    """The class of a sync face forwards class attributes to the backend class behind it.

    So a test that patches ``type(checkpointer)`` (a storage hook, say) patches
    the backend the sync face drives, and undoing the patch restores it exactly.
    """

    _kind: type[Any]
    _saved: dict[str, Any]

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._kind, name)

    def __setattr__(cls, name: str, value: Any) -> None:
        if name in ("_kind", "_saved"):
            super().__setattr__(name, value)
            return
        cls._saved.setdefault(name, cls._kind.__dict__.get(name, _MISSING))
        setattr(cls._kind, name, value)

    def __delattr__(cls, name: str) -> None:
        original = cls._saved.pop(name)
        if original is _MISSING:
            delattr(cls._kind, name)
        else:
            setattr(cls._kind, name, original)


class AsyncOverSync(metaclass=_ForwardingClass):
    """Looks like the async checkpointer it wraps; runs each call on a :class:`SyncCheckpointer`.

    ``kind`` is the async class behind the sync face: its coroutine methods
    become awaitables here; its other methods (iterators, plain getters) are
    called at once, and an iterator the sync face returns becomes an async one.
    Make one with :func:`over_sync`, whose class forwards to ``kind`` (this
    base class forwards to ``HistoryCheckpointer``, as a backend's base does).

    A test that reaches past the public face (a storage hook such as
    ``cp._thread_rows``) reaches the backend behind it: private attributes
    come from the async checkpointer, and its coroutines run on the sync
    face's loop, where that checkpointer lives.
    """

    _kind: type[Any] = HistoryCheckpointer
    _saved: dict[str, Any] = {}  # noqa: RUF012 - the forwarding metaclass's bookkeeping

    def __init__(self, sync: SyncCheckpointer[Any]) -> None:
        self.sync = sync

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") and not name.startswith("__"):
            return self._behind(name)
        value = getattr(self.sync, name)
        if not inspect.ismethod(value) and not inspect.isfunction(value):
            return value  # a property (state_type, path)
        if inspect.iscoroutinefunction(getattr(self._kind, name, None)):

            async def call(*args: Any, **kwargs: Any) -> Any:
                return await asyncio.to_thread(value, *args, **kwargs)

            return call

        def direct(*args: Any, **kwargs: Any) -> Any:
            result = _in_a_thread(lambda: value(*args, **kwargs))
            return _aiter(result) if isinstance(result, Iterator) else result

        return direct

    def _behind(self, name: str) -> Any:
        """A private attribute of the async checkpointer behind the sync face."""
        backend = self.sync._cp  # the test plumbing reaches past the face on purpose
        value = getattr(backend, name)
        if not inspect.iscoroutinefunction(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(self.sync._call, lambda: value(*args, **kwargs))

        return call

    @property
    def state_type(self) -> Any:
        return self.sync.state_type

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


HistoryCheckpointer.register(AsyncOverSync)  # the runner checks isinstance


def _in_a_thread(call: Callable[[], Any]) -> Any:
    """``call()`` in a thread without an event loop, waited for here (a sync call, blocking)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller as it is
            box.append((False, exc))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value


async def _aiter(items: Iterator[Any]) -> AsyncIterator[Any]:
    done = object()
    while (item := await asyncio.to_thread(next, items, done)) is not done:
        yield item


async def over_sync(
    open_async: Callable[[], Awaitable[HistoryCheckpointer[Any]]],
) -> HistoryCheckpointer[Any]:
    """A sync checkpointer over what ``open_async()`` opens, wrapped back into the async face."""
    opened: list[type[HistoryCheckpointer[Any]]] = []

    async def opener() -> HistoryCheckpointer[Any]:
        cp = await open_async()
        opened.append(type(cp))
        return cp

    sync = await asyncio.to_thread(SyncCheckpointer[Any].open, opener)
    face = _ForwardingClass(
        f"SyncFace{opened[0].__name__}",
        (AsyncOverSync,),
        {"_kind": opened[0], "_saved": {}},
    )
    return cast("HistoryCheckpointer[Any]", face(sync))
