"""Entry point of the `rocket` command.

Start-up is cheap: built-in command modules are imported only when their command runs or shows its help
(`rocket --help` lists them from `BUILTIN_COMMANDS`), and plugins' command modules (entry-point group
`rocket.commands`, hook `register_commands(cli)`) load on demand: only to list commands or to run a name
that is not built in. Nothing here imports torch.
"""
from __future__ import annotations

import functools
import importlib
import sys
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandInfo, DefaultPlaceholder, TyperInfo

import rocket_core
from rocket_core.registry import (
    COMMANDS_GROUP,
    CommandModule,
    CommandPlugins,
    Problem,
    first_line,
    hook_functions,
    load_entry_points,
    new_manager,
    one_line,
    suggestion,
)

if TYPE_CHECKING:  # typer >= 0.2x builds on its own copy of click; its types are the ones typer's methods take
    from typer._click import Command, Context

# command -> (module whose `register(app)` adds it, summary for `rocket --help`), in listing order.
BUILTIN_COMMANDS: dict[str, tuple[str, str]] = {
    "plugins": ("rocket_cli.plugins_cmd", "List installed VLAs, teachers, projectors, benchmarks and their problems."),
    "select-layers": ("rocket_cli.layers", "Pick K evenly spread layer pairs with the balanced rule."),
    "recipes": ("rocket_cli.align", "List the paper recipes usable with `rocket align --recipe NAME`."),
    "align": ("rocket_cli.align", "Align a VLA's hidden states to a frozen 3D teacher at several layers at once."),
    "cache": ("rocket_cli.cache", "Teacher-feature cache (targets computed once, read during training)."),
    "plot": ("rocket_cli.plot", "Plot a run's losses and learning rate from metrics.jsonl to a PNG."),
    "profile": ("rocket_cli.profile", "Layer CKA, gradient conflict, projector similarity; JSON + PNG."),
    "teacher": ("rocket_cli.teacher", "Look at what a teacher predicts, to check that its weights are sane."),
    "pull": ("rocket_cli.pull", "Download weights into the Hugging Face cache; later runs work offline."),
    "push": ("rocket_cli.push", "Upload a checkpoint to the Hugging Face Hub with a generated model card."),
    "serve": ("rocket_cli.serve", "Serve a policy over websockets (observation -> action chunk)."),
    "eval": ("rocket_cli.eval", "Evaluate a policy on a benchmark with the protocol pinned."),
    "doctor": ("rocket_cli.doctor", "Check what works on this machine, and how to fix what does not."),
    "data": ("rocket_cli.data", "Inspect a LeRobot dataset: format, features, statistics, task groups, key mapping."),
    "export": ("rocket_cli.export", "Write a checkpoint as an OpenVLA-OFT folder (merged LoRA) with its conventions."),
}
PLUGIN_PANEL = "Commands from {package}"  # `rocket --help` groups plugin commands by the package that adds them
HEAVY_MODULES = ("torch", "transformers")  # what a command module must not import when loaded


class RocketGroup(TyperGroup):
    """The root group: a built-in command's module is imported when the command is resolved, not before;
    plugin commands are loaded when the commands are listed or a name is not a built-in one."""

    def list_commands(self, ctx: Context) -> list[str]:
        self._add_plugin_commands()
        return [*BUILTIN_COMMANDS, *(name for name in super().list_commands(ctx) if name not in BUILTIN_COMMANDS)]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in BUILTIN_COMMANDS and cmd_name not in self.commands:  # listing only: name and summary
            return TyperCommand(cmd_name, help=BUILTIN_COMMANDS[cmd_name][1])
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] in BUILTIN_COMMANDS and args[0] not in self.commands:
            self._load(BUILTIN_COMMANDS[args[0]][0])
        elif args and not args[0].startswith("-") and args[0] not in self.commands:
            self._add_plugin_commands()
            if args[0] not in self.commands:
                names = [*BUILTIN_COMMANDS, *self.commands]
                ctx.fail(f"no such command '{args[0]}'{suggestion(args[0], names)}; see `rocket --help`")
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and any(a in ctx.help_option_names for a in rest):
            from rocket_cli.common import live_help

            live_help(command)
        return name, command, rest

    def _load(self, module_name: str) -> None:
        """Import one command module and add every command its `register(app)` declares."""
        holder = typer.Typer(rich_markup_mode=app.rich_markup_mode)
        importlib.import_module(module_name).register(holder)
        self._add_all(holder)

    def _add_plugin_commands(self) -> None:
        self._add_all(plugin_commands()[1])

    def _add_all(self, holder: typer.Typer) -> None:
        if holder.registered_commands or holder.registered_groups:
            for name, command in typer.main.get_group(holder).commands.items():
                self.add_command(command, name)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rocket {rocket_core.__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="rocket",
    cls=RocketGroup,
    help="Align a 2D vision-language-action model to a frozen 3D vision teacher (ROCKET).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print rocket's version and exit."),
) -> None:
    """Align a 2D vision-language-action model to a frozen 3D vision teacher (ROCKET)."""


def _info_name(info: Any) -> str:
    """The name typer will give a registered command (`CommandInfo`) or sub-app (`TyperInfo`)."""
    def plain(value: Any) -> Any:
        return value.value if isinstance(value, DefaultPlaceholder) else value

    sub_app = getattr(info, "typer_instance", None)
    name = plain(info.name) or (plain(sub_app.info.name) if sub_app is not None else info.callback.__name__)
    return str(name or "").lower().replace("_", "-")


def _heavy_loaded() -> set[str]:
    return {name for name in HEAVY_MODULES if name in sys.modules}


def load_plugin_commands(cli: typer.Typer) -> CommandPlugins:
    """Run each `rocket.commands` module's `register_commands(cli)`; what ran and what failed.

    A module that fails to import, raises, declares a command typer cannot build, or takes a name already
    in use adds nothing (what it did add is rolled back) and becomes a problem that `rocket plugins` lists.
    """
    found = CommandPlugins()
    pm = new_manager()
    heavy = _heavy_loaded()
    for ep, source, module in load_entry_points(COMMANDS_GROUP, found.problems):
        for _, hook in hook_functions(pm, module, COMMANDS_GROUP, source, found.problems):
            taken = set(BUILTIN_COMMANDS) | {_info_name(i) for i in [*cli.registered_commands, *cli.registered_groups]}
            n_commands, n_groups = len(cli.registered_commands), len(cli.registered_groups)
            try:
                hook(cli=cli)
                added: list[CommandInfo | TyperInfo] = [*cli.registered_commands[n_commands:],
                                                        *cli.registered_groups[n_groups:]]
                clash = sorted({_info_name(i) for i in added} & taken)
                if clash:
                    raise RuntimeError(f"command name {', '.join(clash)} is already taken; rename it")
                probe = typer.Typer()  # typer builds the commands only at dispatch: a bad one would stop every command
                probe.registered_commands = cli.registered_commands[n_commands:]
                probe.registered_groups = cli.registered_groups[n_groups:]
                typer.main.get_group(probe)
            except Exception as exc:  # a broken plugin must not break `rocket`
                del cli.registered_commands[n_commands:], cli.registered_groups[n_groups:]
                found.problems.append(Problem(source, f"register_commands failed: {one_line(exc)}", ep.name))
                continue
            for info in added:
                info.rich_help_panel = info.rich_help_panel or PLUGIN_PANEL.format(
                    package=ep.dist.name if ep.dist is not None else ep.name)
            found.modules.append(CommandModule(ep.name, source, first_line(getattr(module, "__doc__", ""))))
        if _heavy_loaded() - heavy:  # it still works, but every `rocket` call now pays for it
            found.problems.append(Problem(
                source, f"imports {', '.join(sorted(_heavy_loaded() - heavy))} when loaded, which slows `rocket --help` "
                        "and every plugin command; import it inside the command function", ep.name))
        heavy = _heavy_loaded()
    return found


@functools.cache
def plugin_commands() -> tuple[CommandPlugins, typer.Typer]:
    """The installed plugin commands, loaded once and only when needed (a listing, a name not built in)."""
    holder = typer.Typer(rich_markup_mode=app.rich_markup_mode)
    return load_plugin_commands(holder), holder


def run() -> None:
    """Console-script entry point."""
    app()
