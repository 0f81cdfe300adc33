"""A module no forkpoint load may ever import: stored data names it, and importing it is caught.

The no-code-on-load tests check that this module is absent from ``sys.modules``
after loading rows that name it; importing it also leaves a marker file.
"""

from __future__ import annotations

import os

MARKER = os.environ.get("FORKPOINT_SENTINEL_MARKER")
if MARKER:
    with open(MARKER, "a", encoding="utf-8") as f:
        f.write("imported\n")


def boom() -> None:
    raise AssertionError("stored data made forkpoint call code")


class Boom:
    def __init__(self, *args: object, **kwargs: object) -> None:
        boom()
