"""Shared CLI plumbing: one-line errors with exit code 2, consoles."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from rocket_core.errors import RocketError
from rocket_core.specs import format_validation_error

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> typer.Exit:
    """Print one error line and return the exit to raise (code 2: bad input)."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code=2)


def handle_errors(fn: F) -> F:
    """Turn bad-input exceptions into one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RocketError as exc:
            raise fail(str(exc)) from None
        except ValidationError as exc:
            raise fail(format_validation_error(exc)) from None

    return wrapper  # type: ignore[return-value]


# The quickstart's plugins: the lowest layer of every run spec (a recipe, config file or flag overrides them).
DEFAULT_PLUGINS: dict[str, dict[str, str]] = {"vla": {"name": "openvla"}, "teacher": {"name": "vggt"},
                                              "projector": {"name": "rocket"}}

# Options several commands share, declared once (typer reads the help from the annotation).
VlaOpt = Annotated[Optional[str], typer.Option(help="VLA plugin name (see `rocket plugins`).",
                                               show_default=DEFAULT_PLUGINS["vla"]["name"])]
TeacherOpt = Annotated[Optional[str], typer.Option(help="Teacher plugin name.",
                                                   show_default=DEFAULT_PLUGINS["teacher"]["name"])]
ProjectorOpt = Annotated[Optional[str], typer.Option(help="Projector strategy: rocket, shared, independent, single.",
                                                     show_default=DEFAULT_PLUGINS["projector"]["name"])]
LayersOpt = Annotated[Optional[str], typer.Option(help="'balanced:K', 'v1,v2:t1,t2', or a layer-map file.")]
PresetOpt = Annotated[Optional[str], typer.Option(help="Preset for both models, e.g. tiny (random init, bundled data).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Spec file (YAML, TOML or JSON).")]
DataOpt = Annotated[Optional[str], typer.Option(help="LeRobot dataset: local folder or Hub repo id (default: bundled).")]
VlaCheckpointOpt = Annotated[Optional[str], typer.Option(help="VLA weights: Hub repo id or local path.")]
TeacherCheckpointOpt = Annotated[Optional[str], typer.Option(help="Teacher weights: Hub repo id or local path.")]
