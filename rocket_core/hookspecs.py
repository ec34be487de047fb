"""pluggy hook specifications: one `register_*` hook per plugin kind.

A plugin module implements the hooks it needs and calls `register(cls)` once per class it provides.
Adding a kind (e.g. datasets) is one more hook here plus one row in `registry.KINDS`.
"""
from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("rocket")
hookimpl = pluggy.HookimplMarker("rocket")


@hookspec
def register_vlas(register: Callable[[type], None]) -> None:
    """Register VLA adapter classes (subclasses of `contracts.VLAAdapter`)."""


@hookspec
def register_teachers(register: Callable[[type], None]) -> None:
    """Register teacher adapter classes (subclasses of `contracts.TeacherAdapter`)."""


@hookspec
def register_projectors(register: Callable[[type], None]) -> None:
    """Register projector strategy classes (subclasses of `contracts.ProjectorStrategy`)."""


@hookspec
def register_benchmarks(register: Callable[[type], None]) -> None:
    """Register simulator benchmarks (subclasses of `contracts.BenchmarkAdapter`; see `rocket_core.eval.base`)."""
