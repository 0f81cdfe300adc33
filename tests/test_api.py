"""The public API: ``forkpoint.__all__`` is sorted and complete; the error tree is the truth."""

from __future__ import annotations

import builtins
import importlib
import inspect
import re
from types import ModuleType

import forkpoint
from forkpoint import errors

# The modules a user programs against (codec, migrate, schema are internals / tooling).
USER_MODULES = ["base", "errors", "memory", "models", "sqlite", "runner"]


def _ruff_sort_key(name: str) -> tuple[int, str]:
    """RUF022's "isort-style" order: CONSTANTS, then Classes, then everything else."""
    if name.isupper() or (name.upper() == name and "_" in name):
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"forkpoint.{name}")


def test_all_is_sorted_and_unique() -> None:
    names = list(forkpoint.__all__)
    assert names == sorted(names, key=_ruff_sort_key)
    assert len(names) == len(set(names))


def test_everything_in_all_resolves() -> None:
    for name in forkpoint.__all__:
        assert hasattr(forkpoint, name), name


def test_every_public_class_and_constant_is_exported() -> None:
    missing = []
    for module_name in USER_MODULES:
        module = _module(module_name)
        public = set(getattr(module, "__all__", []))
        public |= {
            n
            for n, obj in vars(module).items()
            if inspect.isclass(obj)
            and obj.__module__ == module.__name__
            and not n.startswith("_")
            and n.isidentifier()  # pydantic < 2.14 also files `Checkpoint[JsonState]` here
        }
        for name in sorted(public):
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                continue  # helpers such as check_step stay in their module
            if name not in forkpoint.__all__:
                missing.append(f"{module_name}.{name}")
            else:
                assert getattr(forkpoint, name) is obj, name
    assert missing == []


def test_module_all_lists_resolve() -> None:
    for module_name in [*USER_MODULES, "codec", "migrate", "schema"]:
        module = _module(module_name)
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"{module_name}.{name}"


TREE_LINE = re.compile(r"^(?P<prefix>[│ ├└─]*)(?P<name>[A-Z]\w+)(?: \((?P<bases>[\w, ]+)\))?")


def _parse_tree() -> list[tuple[int, str, list[str]]]:
    doc = errors.__doc__
    assert doc is not None
    block = doc.split("::", 1)[1]
    entries = []
    for raw in block.splitlines():
        if not raw.strip():
            continue
        line = raw[4:]  # the literal block's indent
        match = TREE_LINE.match(line)
        assert match is not None, raw
        prefix = match["prefix"]
        assert len(prefix) % 4 == 0, raw
        bases = [b.strip() for b in (match["bases"] or "").split(",") if b.strip()]
        entries.append((len(prefix) // 4, match["name"], bases))
    return entries


def test_error_tree_in_docstring_matches_the_classes() -> None:
    entries = _parse_tree()
    assert entries[0] == (0, "CheckpointError", [])
    stack: list[str] = []
    drawn = []
    for depth, name, bases in entries:
        cls = getattr(errors, name)
        assert inspect.isclass(cls)
        assert issubclass(cls, Exception)
        del stack[depth:]
        assert len(stack) == depth, f"{name} is drawn below a missing parent"
        # A second parent in parentheses is a builtin (ValueError) or another error of this
        # tree (InvalidGraph (InvalidInput)).
        mixed = [b for b in bases if hasattr(errors, b)]
        if stack:
            parent = getattr(errors, stack[-1])
            own = [b for b in cls.__bases__ if b.__module__ == errors.__name__]
            assert own == [parent, *(getattr(errors, b) for b in mixed)], (
                f"{name}: drawn under {stack[-1]}, inherits {own}"
            )
        for base in bases:  # e.g. InvalidInput (ValueError)
            assert issubclass(cls, getattr(errors, base, None) or getattr(builtins, base)), (
                f"{name} is no {base}"
            )
        foreign = [
            b.__name__ for b in cls.__bases__ if b.__module__ == "builtins" and b is not Exception
        ]
        assert sorted(foreign) == sorted(b for b in bases if b not in mixed), name
        stack.append(name)
        drawn.append(name)
    assert len(drawn) == len(set(drawn))
    assert sorted(drawn) == sorted(errors.__all__)
    defined = {
        n
        for n, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    }
    assert defined == set(drawn)


def test_every_error_is_exported_from_the_package() -> None:
    for name in errors.__all__:
        assert name in forkpoint.__all__
        assert issubclass(getattr(forkpoint, name), forkpoint.CheckpointError)
