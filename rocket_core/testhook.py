"""Test hook: stop at a named point so that a test can kill or interrupt the process exactly there.

`ROCKET_TEST_PAUSE_AT=<point>[,<point>...]` names the points and `ROCKET_TEST_PAUSE_DIR` a folder. At a named
point the process creates `<dir>/<point>` and waits while that file exists: the test waits for the file, then
kills the process there, or signals it and deletes the file to let it go on. Points (N = the step):
`step-N` (step N done and logged, before its save), `save-written-N` (checkpoint N written and verified in its
temp folder, before the rename), `save-renamed-N` (renamed to its final name, before `latest` moves).
Unset, as always outside tests, `pause_point` is one truth test: the variable is read once, at import.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

_POINTS = frozenset(filter(None, os.environ.get("ROCKET_TEST_PAUSE_AT", "").split(",")))


def pause_point(kind: str, step: int) -> None:
    """Wait at point `<kind>-<step>` if a test asked for it (see the module docstring)."""
    if not _POINTS or f"{kind}-{step}" not in _POINTS:
        return
    marker = Path(os.environ["ROCKET_TEST_PAUSE_DIR"]) / f"{kind}-{step}"
    marker.touch()
    while marker.exists():
        time.sleep(0.01)
