"""pluggy hook specifications: one `register_*` hook per plugin kind, plus `register_commands` for the CLI.

A plugin module (entry-point group `rocket`) implements the hooks it needs and calls `register(cls)` once
per class it provides. Adding a kind (e.g. datasets) is one more hook here plus one row (its base class) in
`registry.KINDS`.
A command module (entry-point group `rocket.commands`) implements only `register_commands`; it stays light
(no torch import at module level) because it is loaded for every `rocket` invocation, `--help` included.
"""
from __future__ import annotations

from typing import Any, Callable

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


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to `cli`, the root `typer.Typer` of `rocket` (`@cli.command()`, `cli.add_typer(...)`).

    Called before typer parses the command line, so the commands appear in `rocket --help`. Import heavy
    modules (torch, models) inside the command functions, never at module level.
    """
