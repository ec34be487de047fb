"""`rocket plugins`: what is installed, where it comes from, and what cannot be used (one line each)."""
from __future__ import annotations

import json
from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rocket_cli.common import console, err_console, handle_errors
from rocket_core.errors import RocketError
from rocket_core.registry import PluginRecord, get_registry


def _shape(rec: PluginRecord) -> str:
    """Layer count x width at the plugin's default configuration, from `info()` alone (nothing is built)."""
    from rocket_core.specs import TeacherSpec, VLASpec

    try:
        if rec.kind == "vla":
            info = rec.cls.info(VLASpec(name=rec.name))
            return f"{info.num_blocks} x {info.hidden_size}"
        if rec.kind == "teacher":
            info = rec.cls.info(TeacherSpec(name=rec.name))
            return f"{info.num_layers} x {info.feature_dim}"
    except Exception as exc:  # a plugin's info() must not break the listing
        return f"? ({type(exc).__name__})"
    return ""


COLUMNS = ("kind", "name", "version", "source", "shape")  # shape: layers x width


def _table(rows: list[dict[str, Any]], width: int) -> Table:
    """One line per plugin in `width` columns: short columns stay whole, the description ends in an ellipsis."""
    table = Table(title="rocket plugins", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    columns = [c for c in COLUMNS if c != "shape" or any(r["shape"] for r in rows)]  # shapes: only with --shapes
    cells = [[r["source"].split(" (")[0] if c == "source" else r[c] for c in columns] for r in rows]
    widths = [max([len(col), *(len(c[i]) for c in cells)])
              for i, col in enumerate(columns)]
    for col, w in zip(columns, widths):
        table.add_column(col, no_wrap=True, min_width=w)
    room = max(12, width - sum(widths) - 2 * len(widths))  # 2 = the padding between two columns
    table.add_column("description", no_wrap=True, overflow="ellipsis", max_width=room)
    for row, cell in zip(rows, cells):
        table.add_row(*cell, _clip(row["description"], room))
    return table


def _clip(text: str, room: int) -> str:
    """`text` in `room` characters, cut at a word boundary and ended with an ellipsis when it is longer."""
    if len(text) <= room:
        return text
    cut = text[:room - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:(") + "…"


def register_check(group: typer.Typer) -> None:
    """`rocket plugins check KIND NAME`: one random batch through the plugin's contract."""

    @group.command("check")
    @handle_errors
    def check(
        kind: str = typer.Argument(..., help="vla, teacher, projector or benchmark."),
        name: str = typer.Argument(..., help="Plugin name (see `rocket plugins`)."),
        preset: str = typer.Option(None, help="Preset to build (default: the plugin's check_preset, e.g. tiny)."),
    ) -> None:
        """Build a plugin on its tiny preset and check one random batch against the contract (exit 2 on a breach)."""
        from rocket_core.contract_check import check_plugin

        cls = get_registry().get(kind, name) if kind in ("vla", "teacher", "projector", "benchmark") else None
        if cls is None:
            raise RocketError(f"unknown plugin kind '{kind}'; use vla, teacher, projector or benchmark")
        problems = check_plugin(kind, cls, preset)
        for line in problems:
            err_console.print(f"[bold red]error:[/] {escape(line)}", markup=True, highlight=False)
        if problems:
            raise typer.Exit(code=2)
        console.print(f"{kind} '{name}': contract ok", highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="List plugins, or check one against its contract.")
    register_check(group)
    app.add_typer(group, name="plugins")

    @group.callback(invoke_without_command=True)
    @handle_errors
    def plugins(ctx: typer.Context,
                as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
                shapes: bool = typer.Option(False, "--shapes", help="Also show each model's layers x width at "
                                            "its default configuration (imports the plugins' model code).")) -> None:
        """List installed VLAs, teachers, projectors, benchmarks and plugin commands, and their problems.

        A package that fails to import, a hook that raises, an unknown hook name, a class of the wrong
        kind and a name two packages claim each show as one problem line naming the package; the rest
        of the installed plugins keep working. The listing reads only metadata (it stays fast); `--shapes`
        asks each VLA and teacher for its size, which loads their model code.
        """
        if ctx.invoked_subcommand is not None:
            return
        from rocket_cli.main import plugin_commands

        reg, commands = get_registry(), plugin_commands()[0]
        rows: list[dict[str, Any]] = [
            {"kind": r.kind, "name": r.name, "version": r.version, "source": r.source,
             "shape": _shape(r) if shapes else "", "description": r.description}
            for r in reg.records()
        ] + [
            {"kind": "command", "name": c.name, "version": "", "source": c.source, "shape": "",
             "description": c.description}
            for c in commands.modules
        ]
        all_problems = [*reg.problems, *commands.problems]
        problems = [{"source": p.source, "message": p.message} for p in all_problems]
        if as_json:
            typer.echo(json.dumps({"plugins": rows, "problems": problems}, indent=2))
            return
        console.print(_table(rows, console.width))
        for p in all_problems:  # one line each, never wrapped, so it can be grepped and quoted
            console.print(Text.assemble(("problem: ", "bold yellow"), p.line()), soft_wrap=True, highlight=False)
