"""Output paths checked before any work starts: a run must not fail at its first save because `-o` named a file.

Import-light (no torch) so command modules can use it at import time.
"""
from __future__ import annotations

import os
from pathlib import Path

from rocket_core.errors import RocketError
from rocket_core.hub import hub_id


def _existing_ancestor(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def _check_parent(path: Path, flag: str) -> None:
    """The deepest existing part of `path` must be a folder we may create things in."""
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise RocketError(f"{flag} '{path}': '{ancestor}' is a file, not a folder; choose another path")
    if not path.exists() and not _writable(ancestor):
        raise RocketError(f"{flag} '{path}' cannot be created: '{ancestor}' is read-only; choose another folder")


def check_output_dir(path: str | Path, flag: str) -> Path:
    """`path` is, or can become, a folder this process writes into; else one line naming `flag`."""
    repo = hub_id(path)
    if repo is not None:
        raise RocketError(f"{flag} takes a local folder, not 'hf://{repo}'; upload a finished run with `rocket push`")
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise RocketError(f"{flag} '{p}' is a file, not a folder; give a folder path")
    _check_parent(p, flag)
    if p.is_dir() and not _writable(p):
        raise RocketError(f"{flag} '{p}' is read-only; make it writable or choose another folder")
    return p


def check_output_file(path: str | Path, flag: str) -> Path:
    """`path` can be written as a file (it is not a folder, its folder can be made and written)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise RocketError(f"{flag} '{p}' is a folder; give a file name (e.g. inside it)")
    _check_parent(p, flag)
    if p.parent.is_dir() and not _writable(p.parent):
        raise RocketError(f"{flag} '{p}' cannot be written: '{p.parent}' is read-only; choose another folder")
    return p
