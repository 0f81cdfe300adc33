"""What a LangGraph saver remembers of list values between calls, and decodes once per call.

* :class:`ListCache` — per ``(thread, namespace, channel)``, the last list value
  stored or read, element by element: each element's text, the snapshot that
  vouches for it (``reuse.py``) and its *twin*, the pristine object decoded from
  that text. A put encodes only the elements it cannot vouch for; the next
  ``get_tuple`` hands out copies of twins instead of decoding their texts again.
* :class:`Decoded` — one read call's list elements, each decoded once: the
  checkpoints of a listing that hold the same stored list share its decoded
  elements; ``get_tuple`` gets fresh copies.

Nothing here is trusted for what is in the database: a put still checks in its
own transaction that the list it appends to ends where this cache says, with
the element it saw last (``store._plan_list``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from . import store
from .errors import UndecodableValue
from .registry import TypeRegistry
from .reuse import Snapshot, clone, snapshot, unchanged

__all__ = ["NO_TWIN", "Decoded", "KnownList", "ListCache"]


NO_TWIN: Any = object()
"""In a twin list: no pristine decoded object is kept for that element."""


class Decoded:
    """One read call's list elements: each stored element decoded once, when first needed.

    For a listing (``twins_from`` None), checkpoints of the call that hold the
    same stored list share its decoded elements (a value is a new list of those
    objects). For ``get_tuple`` (``twins_from`` given: per list, what the saver
    knows of that channel) every element handed out is a fresh object: a
    :func:`~forkpoint.langgraph.reuse.clone` of the pristine object decoded from
    the same text earlier (kept by the saver, never handed out), or decoded now.
    """

    def __init__(
        self,
        registry: TypeRegistry,
        twins_from: dict[store.ListKey, KnownList | None] | None = None,
    ) -> None:
        self.registry = registry
        self.texts: dict[store.ListKey, list[str]] = {}
        self.objects: dict[store.ListKey, list[Any]] = {}
        self.twins: dict[store.ListKey, list[Any]] = {}
        self.snapshots: dict[store.ListKey, list[Snapshot | None]] = {}
        self._twins_from = twins_from

    def known(self) -> dict[store.ListKey, int]:
        return {key: len(texts) for key, texts in self.texts.items()}

    def add(self, page: store.Page) -> None:
        for key, (start, texts) in page.items.items():
            have = self.texts.setdefault(key, [])
            if start == len(have):
                have.extend(texts)

    def value(self, channel: str, ref: store.ListRef) -> list[Any]:
        texts = self.texts.get(ref.key, [])
        if len(texts) < ref.length:
            raise UndecodableValue("the stored value is missing", channel=channel)
        objects = self.objects.setdefault(ref.key, [])
        if self._twins_from is None:
            load = self.registry.load_item
            for index in range(len(objects), ref.length):
                objects.append(load(texts[index], index, channel=channel))
            return objects[: ref.length]
        source = self._twins_from.get(ref.key)
        twins = self.twins.setdefault(ref.key, [])
        snapshots = self.snapshots.setdefault(ref.key, [])
        for index in range(len(objects), ref.length):
            twin, recorded = (NO_TWIN, None) if source is None else source.twin(index, texts[index])
            if twin is NO_TWIN:
                twin = self.registry.load_item(texts[index], index, channel=channel)
                recorded = snapshot(self.registry, twin)
            copied, fresh = clone(self.registry, twin)
            if copied:  # the copy has the twin's structure and leaves: the twin's snapshot
                objects.append(fresh)
                twins.append(twin)
                snapshots.append(recorded)
            else:  # parts clone() does not copy: hand out the decoded object, keep no twin
                objects.append(twin)
                twins.append(NO_TWIN)
                snapshots.append(recorded)
        return objects[: ref.length]


class KnownList:
    """A list value stored or read: its elements, their texts, snapshots and twins.

    An element's text is reused while the element is the same object and
    still matches its snapshot (``reuse.unchanged``). ``twins`` holds, per
    element, the pristine object decoded from its text (never handed out), or
    ``NO_TWIN``: the next ``get_tuple`` hands out copies of twins instead of
    decoding those texts again.
    """

    __slots__ = ("_by_text", "_positions", "list_id", "objects", "snapshots", "texts", "twins")

    def __init__(
        self,
        texts: list[str],
        objects: list[Any],
        snapshots: list[Snapshot | None],
        twins: list[Any],
        list_id: str = "",
    ) -> None:
        self.texts = texts
        self.objects = objects  # held, so no other object can take one's id() meanwhile
        self.snapshots = snapshots
        self.twins = twins  # pristine decoded object per element, or NO_TWIN
        self.list_id = list_id
        self._positions: dict[int, int] | None = None
        self._by_text: dict[str, tuple[Any, Snapshot | None]] | None = None

    def position(self, index: int, item: Any) -> int | None:
        """Where ``item`` (this very object) is in :attr:`objects`: usually at ``index`` itself
        (a list grown at its end), else looked up by identity (a list edited or re-sorted)."""
        objects = self.objects
        if index < len(objects) and objects[index] is item:
            return index
        if self._positions is None:
            self._positions = {id(obj): at for at, obj in enumerate(objects)}
        at = self._positions.get(id(item))
        return at if at is not None and objects[at] is item else None

    def twin(self, index: int, text: str) -> tuple[Any, Snapshot | None]:
        """``(twin, its snapshot)`` of an element stored as ``text``, or ``(NO_TWIN, None)``.

        The element at the same index usually is the one (a list read again, or
        grown since); any other position is found by its text (a branch).
        """
        if index < len(self.texts) and self.texts[index] == text:
            twin = self.twins[index]
            return (twin, self.snapshots[index]) if twin is not NO_TWIN else (NO_TWIN, None)
        return self.twins_by_text().get(text, (NO_TWIN, None))

    def twins_by_text(self) -> dict[str, tuple[Any, Snapshot | None]]:
        """``{text: (twin, its snapshot)}`` for the elements that have a twin."""
        if self._by_text is None:
            self._by_text = {
                text: (twin, recorded)
                for text, twin, recorded in zip(self.texts, self.twins, self.snapshots, strict=True)
                if twin is not NO_TWIN
            }
        return self._by_text


class ListCache:
    """The last list value stored or read per ``(thread, namespace, channel)``, element by element.

    A put encodes only the elements it cannot reuse: an element is reused when
    it is the very object stored or read last time and ``reuse.unchanged``
    confirms that nothing it is made of was replaced or resized since (an
    object edited in place is encoded again; a type without snapshots always
    is). When the texts extend the last list, the put appends to it; the job
    still checks that the list ends where this cache says, with the element it
    saw last (another saver, a prune, a deletion), else it stores a new list.
    Bounded (LRU): at most ``SIZE`` lists and ``ITEMS`` elements in all (each
    element keeps its text, its snapshot and its twin: a few kilobytes for a
    chat message).
    """

    SIZE = 64
    ITEMS = 20_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lists: OrderedDict[tuple[str, str, str], KnownList] = OrderedDict()
        self._items = 0

    def encode(
        self, where: tuple[str, str, str], value: list[Any], registry: TypeRegistry
    ) -> tuple[KnownList, tuple[str, int] | None]:
        """Each element's text (reused where it can be) and the list this one extends, if any."""
        known = self.get(where)
        channel = where[2]
        texts: list[str] = []
        snapshots: list[Snapshot | None] = []
        twins: list[Any] = []
        for index, item in enumerate(value):
            at = None if known is None else known.position(index, item)
            if at is not None and known is not None:
                recorded = known.snapshots[at]
                if recorded is not None and unchanged(registry, item, recorded):
                    texts.append(known.texts[at])
                    snapshots.append(recorded)
                    twins.append(known.twins[at])
                    continue
            # the snapshot before the text: an edit landing in between (LangGraph may edit a
            # value it handed over, on another thread) then differs from it at the next put
            recorded = snapshot(registry, item)
            texts.append(registry.dumps_item(item, index, channel=channel))
            snapshots.append(recorded)
            twins.append(NO_TWIN)
        base = None
        if known is not None and known.list_id:
            length = len(known.texts)
            if length <= len(texts) and texts[:length] == known.texts:
                base = (known.list_id, length)
        return KnownList(texts, list(value), snapshots, twins), base

    def get(self, where: tuple[str, str, str]) -> KnownList | None:
        with self._lock:
            return self._lists.get(where)

    def read(
        self,
        where: tuple[str, str, str],
        list_id: str,
        texts: list[str],
        objects: list[Any],
        twins: list[Any],
        snapshots: list[Snapshot | None],
    ) -> None:
        """Remember a list value ``get_tuple`` handed out, with snapshots taken before anyone
        could edit it (a copy's is its twin's)."""
        self._keep(where, KnownList(texts, list(objects), snapshots, twins, list_id))

    def stored(
        self,
        request: store.PutRequest,
        encoded: dict[str, KnownList],
        lists: dict[str, tuple[str, int]],
    ) -> None:
        for channel, (list_id, _) in lists.items():
            known = encoded[channel]
            known.list_id = list_id
            self._keep((request.thread_id, request.checkpoint_ns, channel), known)

    def forget(self, thread_ids: Collection[str] | None = None) -> None:
        """Drop what is known of these threads (all threads: None)."""
        with self._lock:
            for where in list(self._lists):
                if thread_ids is None or where[0] in thread_ids:
                    self._items -= len(self._lists.pop(where).texts)

    def _keep(self, where: tuple[str, str, str], known: KnownList) -> None:
        with self._lock:
            old = self._lists.pop(where, None)
            if old is not None:
                self._items -= len(old.texts)
            self._lists[where] = known
            self._items += len(known.texts)
            while len(self._lists) > self.SIZE or (
                self._items > self.ITEMS and len(self._lists) > 1
            ):
                _, dropped = self._lists.popitem(last=False)
                self._items -= len(dropped.texts)
