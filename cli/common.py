"""Shared CLI plumbing: one-line errors with exit code 2, consoles, options several commands share.

Import-light on purpose (no torch, no specs): every command module imports it, `--help` included.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from rocket_core.errors import RocketError

if TYPE_CHECKING:
    from typer._click import Command  # typer's own click (see rocket_cli.main)

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> typer.Exit:
    """Print one error line and return the exit to raise (code 2: bad input)."""
    from rich.markup import escape  # messages quote user input and shapes like `[height, width, 3]`

    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    return typer.Exit(code=2)


def handle_errors(fn: F) -> F:
    """Turn bad-input exceptions, and exceptions raised in plugin code, into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RocketError as exc:
            raise fail(str(exc)) from None
        except ValidationError as exc:
            from rocket_core.specs import format_validation_error

            raise fail(format_validation_error(exc)) from None
        except (typer.Exit, typer.Abort, typer.TyperException):  # the command's own exits, even from plugin code
            raise
        except Exception as exc:  # a bug in plugin code: one line naming the plugin, as `rocket plugins check` does
            from rocket_core.contract_info import plugin_error
            from rocket_core.registry import loaded_records

            error = plugin_error(exc, loaded_records())
            if error is None:
                raise
            raise fail(str(error)) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature


# The quickstart's plugins: the lowest layer of every run spec (a recipe, config file or flag overrides them).
DEFAULT_PLUGINS: dict[str, dict[str, str]] = {"vla": {"name": "openvla"}, "teacher": {"name": "vggt"},
                                              "projector": {"name": "rocket"}}

# Help of the plugin-name options; `live_help` swaps in the registered names when help is shown.
VLA_HELP = "VLA plugin name (see `rocket plugins`)."
TEACHER_HELP = "Teacher plugin name (see `rocket plugins`)."
PROJECTOR_HELP = "Projector strategy (see `rocket plugins`)."
_LIVE_HELP = {VLA_HELP: ("vla", "VLA plugin"), TEACHER_HELP: ("teacher", "Teacher plugin"),
              PROJECTOR_HELP: ("projector", "Projector strategy")}


def live_help(command: Command) -> None:
    """Name the registered plugins in the help of `command`'s (and its subcommands') plugin-name options.

    Called only when help is about to be shown: listing the names loads the plugin modules, which
    running a command does anyway but `--help` of a command without such options need not.
    """
    registry = None
    for cmd in [command, *getattr(command, "commands", {}).values()]:
        for param in cmd.params:
            entry = _LIVE_HELP.get(getattr(param, "help", None) or "")
            if entry is None:
                continue
            if registry is None:
                from rocket_core.registry import get_registry

                registry = get_registry()
            kind, label = entry
            param.help = f"{label}: {', '.join(sorted(registry.plugins[kind])) or 'none installed'}."


# Options several commands share, declared once (typer reads the help from the annotation).
VlaOpt = Annotated[Optional[str], typer.Option(help=VLA_HELP, show_default=DEFAULT_PLUGINS["vla"]["name"])]
TeacherOpt = Annotated[Optional[str], typer.Option(help=TEACHER_HELP, show_default=DEFAULT_PLUGINS["teacher"]["name"])]
ProjectorOpt = Annotated[Optional[str], typer.Option(help=PROJECTOR_HELP,
                                                     show_default=DEFAULT_PLUGINS["projector"]["name"])]
LayersOpt = Annotated[Optional[str], typer.Option(help="'balanced:K', 'v1,v2:t1,t2', or a layer-map file.")]
PresetOpt = Annotated[Optional[str], typer.Option(help="Preset for both models, e.g. tiny (random init, bundled data).")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Spec file (YAML, TOML or JSON).")]
DataOpt = Annotated[Optional[str], typer.Option(help="LeRobot dataset: local folder or Hub repo id (default: bundled).")]
VlaCheckpointOpt = Annotated[Optional[str], typer.Option(help="VLA weights: Hub repo id or local path.")]
TeacherCheckpointOpt = Annotated[Optional[str], typer.Option(help="Teacher weights: Hub repo id or local path.")]
