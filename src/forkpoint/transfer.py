"""Export threads to a portable JSON-lines file and import them into any checkpointer.

The file format, version 2 (UTF-8, one JSON object per line; blank lines are
ignored):

1. a header ``{"format": "forkpoint-export", "version": 2}``;
2. for each thread, a thread record, then every checkpoint of that thread in
   increasing step order::

     {"kind": "thread", "thread_id": "…", "created_at": "…", "updated_at": "…",
      "latest_step": 7, "checkpoint_count": 8, "parent_thread_id": null,
      "parent_step": null, "metadata": {…}}
     {"kind": "checkpoint", "thread_id": "…", "step": 0, "node": "…",
      "queue": [["node", 0]], "created_at": "…", "metadata": {…},
      "state_version": 1, "state": {…}}

Times are RFC 3339 in UTC with microseconds (``2026-01-02T03:04:05.678901Z``);
``state`` is the full state as JSON (never a stored delta), so a file is
readable and editable without forkpoint; ``state_version`` is the version
of the user's state class that wrote it (see ``StateSchema``'s ``version``),
so an imported state is upgraded as the original would have been. Readers
ignore object keys they do not know. Version 1 files (no ``state_version``:
every state is version 1) are read too; any other version is refused, so an
older forkpoint never imports a newer state as version 1.

:func:`import_threads` validates the whole file (every record, and every
thread as :meth:`~forkpoint.HistoryCheckpointer.restore_thread` would) and
checks that no thread id is taken before it writes anything, then recreates
each thread exactly: times, lineage, metadata and every checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from pydantic import ValidationError

from .base import HistoryCheckpointer, check_restore
from .codec import format_time
from .errors import CheckpointError, CheckpointNotFound, InvalidInput, ThreadExists
from .models import Checkpoint, JsonState, S, StateSchema, ThreadInfo, check_thread_id

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportContents",
    "ExportReport",
    "ImportReport",
    "export_threads",
    "import_threads",
    "read_export",
]

EXPORT_FORMAT = "forkpoint-export"
EXPORT_VERSION = 2
READS_VERSIONS = (1, 2)
"""Export versions :func:`read_export` reads (a version 1 file's states are all state version 1)."""

Progress = Callable[[int], None]
"""Called with the number of checkpoints just written or imported (for a progress bar)."""


class Writable(Protocol):
    """Where an export goes: anything with ``write(str)`` (an open text file, ``sys.stdout``)."""

    def write(self, text: str, /) -> object: ...


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_threads` wrote."""

    threads: int
    checkpoints: int


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_threads` recreated, in file order."""

    thread_ids: list[str]
    checkpoints: int

    @property
    def threads(self) -> int:
        """How many threads were imported."""
        return len(self.thread_ids)


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def thread_record(info: ThreadInfo) -> dict[str, Any]:
    """The export's thread record (without ``kind``): exactly the fields import restores."""
    return {
        "thread_id": info.thread_id,
        "created_at": format_time(info.created_at),
        "updated_at": format_time(info.updated_at),
        "latest_step": info.latest_step,
        "checkpoint_count": info.checkpoint_count,
        "parent_thread_id": info.parent_thread_id,
        "parent_step": info.parent_step,
        "metadata": info.metadata,
    }


def checkpoint_record(cp: Checkpoint[Any]) -> dict[str, Any]:
    """The export's checkpoint record (without ``kind``), with the state as plain JSON."""
    return {
        "thread_id": cp.thread_id,
        "step": cp.step,
        "node": cp.node,
        "queue": [[n, p] for n, p in cp.queue],
        "created_at": format_time(cp.created_at),
        "metadata": cp.metadata,
        "state_version": _state_version(cp.state.data),
        "state": cp.state.data.model_dump(mode="json"),
    }


def _state_version(state: StateSchema) -> int:
    """The version of the user's class the state is written by (kept as stored by JsonState)."""
    return state.stored_version if isinstance(state, JsonState) else type(state).state_version


def _state(state_type: type[S], data: object, version: object, where: str) -> S:
    """A checkpoint's state from an export record, remembering the version that wrote it."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: invalid checkpoint record: the state is not a JSON object")
    if type(version) is not int or version < 1:
        raise InvalidInput(f"{where}: invalid checkpoint record: state_version {version!r}")
    if issubclass(state_type, JsonState):
        return state_type.from_stored(data, version)
    if version != state_type.state_version:
        raise InvalidInput(
            f"{where}: the state was written by version {version} of its class and "
            f"{state_type.__name__} is version {state_type.state_version}; import it with "
            "JsonState (as `forkpoint import` does), then `forkpoint upgrade`"
        )
    return state_type.model_validate(data)


async def _thread_lines(cp: HistoryCheckpointer[S], thread_id: str) -> tuple[list[str], int | None]:
    """The thread's checkpoint records, oldest first, each state rebuilt once; and its newest step.

    ``iter_states`` reads newest to oldest (that is how reverse deltas
    apply), so one thread's lines are gathered and written reversed: memory
    holds one thread's export text, never two threads'.
    """
    lines: list[str] = []
    newest: int | None = None
    async for found in cp.iter_states(thread_id):
        if newest is None:
            newest = found.step
        lines.append(_line({"kind": "checkpoint", **checkpoint_record(found)}))
    lines.reverse()
    return lines, newest


_ATTEMPTS = 5  # reads of a thread that keeps changing before the export gives up


async def _consistent(
    cp: HistoryCheckpointer[S], info: ThreadInfo
) -> tuple[ThreadInfo, list[str]] | None:
    """A thread record and the rows it describes, as stored at one moment; None if deleted.

    A thread written or pruned between reading its record and its rows is
    read again (the file must import: its record has to match its rows). A
    damaged record whose count disagrees with its rows while nothing changes
    is exported with the count and latest step of the rows, so what is left
    can be moved and imported (``forkpoint check`` reports such a record).
    """
    for _ in range(_ATTEMPTS):
        lines, newest = await _thread_lines(cp, info.thread_id)
        if len(lines) == info.checkpoint_count and newest == info.latest_step:
            return info, lines
        fresh = await cp.thread_info(info.thread_id)
        if fresh is None:
            return None
        if fresh == info:  # a record that disagrees with its rows and is not changing: damage
            if newest is None:
                return None  # no rows left to export
            # The rows are what there is; the record's count and latest step describe them.
            return info.model_copy(
                update={"checkpoint_count": len(lines), "latest_step": newest}
            ), lines
        info = fresh
    raise CheckpointError(
        f"the thread changed on each of {_ATTEMPTS} reads while it was exported; try again",
        thread_id=info.thread_id,
    )


async def export_threads(
    cp: HistoryCheckpointer[S],
    out: Writable | str | os.PathLike[str],
    thread_ids: Iterable[str] | None = None,
    *,
    progress: Progress | None = None,
) -> ExportReport:
    """Write the header, then each thread (all, in id order, or ``thread_ids`` in that order).

    ``out`` is an open text stream, or a path: the file is then written
    beside its final name and renamed into place only when the export is
    complete, with mode 0600 like the database (an export holds every state),
    so a failed export leaves no partial file and never exposes one.

    An unknown id in ``thread_ids`` raises ``CheckpointNotFound`` before
    anything is written. The database may be in use: each thread's record
    and rows are read as they stood at one moment (a thread written or
    pruned meanwhile is read again; one deleted meanwhile is left out), so
    the file always imports.
    """
    chosen = None if thread_ids is None else await _lookup(cp, thread_ids)
    if isinstance(out, str | os.PathLike):
        with _private_file(os.fspath(out)) as f:
            return await _export(cp, f, chosen, progress)
    return await _export(cp, out, chosen, progress)


async def _lookup(cp: HistoryCheckpointer[S], thread_ids: Iterable[str]) -> list[ThreadInfo]:
    infos = []
    for thread_id in thread_ids:
        info = await cp.thread_info(check_thread_id(thread_id))
        if info is None:
            raise CheckpointNotFound("no such thread", thread_id=thread_id)
        infos.append(info)
    return infos


async def _listed(infos: list[ThreadInfo]) -> AsyncIterator[ThreadInfo]:
    for info in infos:
        yield info


async def _export(
    cp: HistoryCheckpointer[S],
    out: Writable,
    chosen: list[ThreadInfo] | None,
    progress: Progress | None,
) -> ExportReport:
    out.write(_line({"format": EXPORT_FORMAT, "version": EXPORT_VERSION}))
    threads = checkpoints = 0
    async for listed in cp.iter_threads() if chosen is None else _listed(chosen):
        read = await _consistent(cp, listed)
        if read is None:  # deleted since it was listed: export what exists
            continue
        info, lines = read
        out.write(_line({"kind": "thread", **thread_record(info)}))
        out.write("".join(lines))
        threads += 1
        checkpoints += len(lines)
        if progress is not None:
            progress(len(lines))
    return ExportReport(threads=threads, checkpoints=checkpoints)


@contextlib.contextmanager
def _private_file(path: str) -> Iterator[TextIO]:
    """A new 0600 file beside ``path``, renamed onto ``path`` on success, removed on failure."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".forkpoint-export-", dir=directory)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@dataclass(frozen=True)
class ExportContents:
    """A parsed, validated export: thread records in file order and each thread's checkpoints."""

    threads: list[ThreadInfo]
    checkpoints: dict[str, list[Checkpoint[Any]]]

    @property
    def total(self) -> int:
        """How many checkpoints the file holds."""
        return sum(len(v) for v in self.checkpoints.values())


def read_export(
    lines: Iterable[str], state_type: type[S], *, name: str = "export"
) -> ExportContents:
    """Parse and validate a whole export; ``InvalidInput`` naming ``name:line`` on any problem.

    Each state is validated as ``state_type``; every thread must be whole as
    :meth:`~forkpoint.HistoryCheckpointer.restore_thread` requires.
    """
    model = Checkpoint[state_type]  # type: ignore[valid-type]  # the parametrised model for S
    infos: list[ThreadInfo] = []
    rows: dict[str, list[Checkpoint[Any]]] = {}
    header_seen = False
    try:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{name}:{number}"
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as exc:
                raise InvalidInput(f"{where}: not JSON ({exc})") from exc
            if not isinstance(record, dict):
                raise InvalidInput(f"{where}: expected a JSON object")
            if not header_seen:
                if record.get("format") != EXPORT_FORMAT:
                    raise InvalidInput(f"{name} is not a forkpoint export (no header line)")
                if record.get("version") not in READS_VERSIONS:
                    raise InvalidInput(
                        f"{name}: export version {record.get('version')!r} is not supported "
                        f"(this forkpoint reads versions {', '.join(map(str, READS_VERSIONS))})"
                    )
                header_seen = True
                continue
            kind = record.pop("kind", None)
            try:
                if kind == "thread":
                    info = ThreadInfo.model_validate(record)
                    check_thread_id(info.thread_id)
                    if info.thread_id in rows:
                        raise InvalidInput(f"{where}: thread {info.thread_id!r} appears twice")
                    infos.append(info)
                    rows[info.thread_id] = []
                elif kind == "checkpoint":
                    state = _state(
                        state_type, record.get("state"), record.pop("state_version", 1), where
                    )
                    found = model.model_validate({**record, "state": {"data": state}})
                    if not infos or found.thread_id != infos[-1].thread_id:
                        raise InvalidInput(
                            f"{where}: checkpoint of {found.thread_id!r} does not follow its thread record"
                        )
                    rows[found.thread_id].append(found)
                else:
                    raise InvalidInput(f"{where}: unknown record kind {kind!r}")
            except (ValidationError, RecursionError) as exc:
                first = str(exc).splitlines()
                raise InvalidInput(
                    f"{where}: invalid {kind} record: {' '.join(first[:3])}"
                ) from exc
            except CheckpointError as exc:
                if str(exc).startswith(where):
                    raise
                raise InvalidInput(f"{where}: invalid {kind} record: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name} is not a forkpoint export (not UTF-8 text)") from exc
    if not header_seen:
        raise InvalidInput(f"{name} is empty, not a forkpoint export")
    for info in infos:  # every thread is whole before anything is written
        try:
            check_restore(info, rows[info.thread_id])
        except CheckpointError as exc:
            raise InvalidInput(f"{name}: {exc}") from exc
    return ExportContents(infos, rows)


async def import_threads(
    cp: HistoryCheckpointer[S],
    source: Iterable[str] | str | os.PathLike[str] | ExportContents,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Recreate every thread of an export (a path, lines of text such as an open file,
    or what :func:`read_export` returned) in ``cp``.

    The whole file is read and validated first (``InvalidInput`` naming the
    file, ``name`` or its path, and the line); then, if any of its thread
    ids exists in ``cp``, ``ThreadExists`` names the first (and how many
    more) and nothing is written. Each thread is restored in one
    transaction, in file order.
    """
    if isinstance(source, ExportContents):  # read and validated by read_export already
        contents = source
    elif isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        with open(path, encoding="utf-8") as f:  # noqa: ASYNC230 - read whole before any await
            contents = read_export(f, cp.state_type, name=name or path)
    else:
        contents = read_export(source, cp.state_type, name=name or "export")
    taken = [i.thread_id for i in contents.threads if await cp.thread_info(i.thread_id) is not None]
    if taken:
        more = f" (and {len(taken) - 1} more)" if len(taken) > 1 else ""
        raise ThreadExists(
            f"thread {taken[0]!r}{more} already exists; nothing was imported", thread_id=taken[0]
        )
    for info in contents.threads:
        rows: Sequence[Checkpoint[S]] = contents.checkpoints[info.thread_id]
        await cp.restore_thread(info, rows)
        if progress is not None:
            progress(len(rows))
    return ImportReport([i.thread_id for i in contents.threads], contents.total)
