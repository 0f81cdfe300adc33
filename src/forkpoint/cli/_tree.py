"""``tree``: the fork lineage of every thread (or of one) as a tree.

A thread hangs under its parent only if that parent was created no later
than the thread itself: a fork is always younger than what it was forked
from. A parent link to a deleted thread whose id was later reused (delete
``main``, fork ``experiment`` into a new ``main``) therefore makes the older
thread a root instead of a cycle. Should a cycle still remain (a crafted
file with equal times), its threads become roots in id order: no thread is
ever left out.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..models import ThreadInfo
from ._app import DbOption, JsonOption, command, db_path, open_db, where
from ._args import UserError
from ._reads import all_threads, status_text
from ._text import echo, plural, print_json

__all__ = ["tree"]


def _parent(info: ThreadInfo, by_id: dict[str, ThreadInfo]) -> ThreadInfo | None:
    """The thread ``info`` was forked from, if it still exists (and is not a later namesake)."""
    if info.parent_thread_id is None:
        return None
    parent = by_id.get(info.parent_thread_id)
    if parent is None or parent is info or parent.created_at > info.created_at:
        return None
    return parent


def forest(infos: list[ThreadInfo], only: str | None = None) -> list[dict[str, Any]]:
    """Roots (and their subtrees) covering every thread exactly once; ``only``'s subtree if given.

    Nodes are ``{"info": ThreadInfo, "children": [...]}``, children in id order.
    """
    by_id = {i.thread_id: i for i in infos}
    children: dict[str, list[ThreadInfo]] = {}
    roots: list[ThreadInfo] = []
    for info in infos:  # infos come in id order, so every list is in id order
        parent = _parent(info, by_id)
        if parent is None:
            roots.append(info)
        else:
            children.setdefault(parent.thread_id, []).append(info)
    if only is not None:
        roots = [by_id[only]]
    placed: set[str] = set()
    out: list[dict[str, Any]] = []

    def grow(root: ThreadInfo) -> dict[str, Any]:
        top: dict[str, Any] = {"info": root, "children": []}
        placed.add(root.thread_id)
        stack = [top]
        while stack:
            node = stack.pop()
            for kid in children.get(node["info"].thread_id, []):
                if kid.thread_id in placed:
                    continue
                placed.add(kid.thread_id)
                item: dict[str, Any] = {"info": kid, "children": []}
                node["children"].append(item)
                stack.append(item)
        return top

    out = [grow(r) for r in roots]
    if only is None:
        # Whatever no root reached lies on a cycle of parent links: start one root per cycle.
        out += [grow(i) for i in infos if i.thread_id not in placed]
    return out


def _json(node: dict[str, Any]) -> dict[str, Any]:
    info: ThreadInfo = node["info"]
    return {
        "thread_id": info.thread_id,
        "parent_thread_id": info.parent_thread_id,
        "parent_step": info.parent_step,
        "checkpoints": info.checkpoint_count,
        "latest_step": info.latest_step,
        "latest_node": info.latest_node,
        "status": info.status,
        "children": [_json(k) for k in node["children"]],
    }


def _label(info: ThreadInfo, *, root: bool, by_id: dict[str, ThreadInfo]) -> str:
    text = info.thread_id
    if info.parent_thread_id is not None:
        where = f"{info.parent_thread_id} @ {info.parent_step}"
        if not root:
            text += f"  forked at step {info.parent_step}"
        elif info.parent_thread_id not in by_id:
            text += f"  (forked from deleted {where})"
        else:
            text += f"  (forked from an earlier, deleted {where})"
    return f"{text}  · {plural(info.checkpoint_count, 'checkpoint')} · {status_text(info)}"


def render(trees: list[dict[str, Any]], by_id: dict[str, ThreadInfo]) -> list[str]:
    """The tree as text lines (``├──``/``└──``); lines are never cut, whatever their length."""
    lines: list[str] = []
    for top in trees:
        lines.append(_label(top["info"], root=True, by_id=by_id))
        stack = [(kid, "", i == len(top["children"]) - 1) for i, kid in enumerate(top["children"])]
        stack.reverse()
        while stack:
            node, prefix, last = stack.pop()
            info = node["info"]
            lines.append(
                prefix + ("└── " if last else "├── ") + _label(info, root=False, by_id=by_id)
            )
            inner = prefix + ("    " if last else "│   ")
            kids = node["children"]
            stack += reversed([(k, inner, i == len(kids) - 1) for i, k in enumerate(kids)])
    return lines


@command()
async def tree(
    ctx: typer.Context,
    thread: Annotated[
        str | None, typer.Argument(help="Draw only this thread's subtree.", show_default=False)
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Draw the fork lineage of all threads (or of one) as a tree."""
    async with open_db(db_path(ctx, db)) as cp:
        infos = await all_threads(cp)
        by_id = {i.thread_id: i for i in infos}
        if thread is not None and thread not in by_id:
            raise UserError(f"no thread {thread!r} in {where(cp)}")
    trees = forest(infos, thread)
    if as_json:
        print_json([_json(t) for t in trees])
        return
    if not trees:
        echo("no threads")
        return
    echo("\n".join(render(trees, by_id)))
