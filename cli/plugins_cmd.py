"""`rocket plugins`: what is installed, where it comes from, and what failed to load."""
from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from cli.common import console, err_console, handle_errors
from rocket_core.errors import RocketError
from rocket_core.registry import PluginRecord, get_registry
from rocket_core.specs import TeacherSpec, VLASpec


def _shape(rec: PluginRecord) -> str:
    """Layer count and width at the plugin's default configuration (no weights are loaded)."""
    try:
        if rec.kind == "vla":
            info = rec.cls.info(VLASpec(name=rec.name))
            return f"{info.num_blocks} blocks x {info.hidden_size}"
        if rec.kind == "teacher":
            info = rec.cls.info(TeacherSpec(name=rec.name))
            return f"{info.num_layers} layers x {info.feature_dim}"
    except Exception as exc:  # a plugin's info() must not break the listing
        return f"? ({type(exc).__name__})"
    return ""


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
            err_console.print(f"[bold red]error:[/] {line}", markup=True, highlight=False)
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
                as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
        """List VLA adapters, teachers and projector strategies (built-in and third-party)."""
        if ctx.invoked_subcommand is not None:
            return
        reg = get_registry()
        rows: list[dict[str, Any]] = [
            {
                "kind": r.kind,
                "name": r.name,
                "version": r.version,
                "source": r.source,
                "shape": _shape(r),
                "description": r.description,
            }
            for r in reg.records()
        ]
        broken = [{"name": b.name, "source": b.source, "error": b.error} for b in reg.broken]
        if as_json:
            typer.echo(json.dumps({"plugins": rows, "broken": broken}, indent=2))
            return
        table = Table(title="rocket plugins")
        for col in ("kind", "name", "version", "source", "shape", "description"):
            table.add_column(col, overflow="fold")
        for row in rows:
            table.add_row(row["kind"], row["name"], row["version"], row["source"].split(" (")[0], row["shape"],
                          row["description"])
        console.print(table)
        for b in broken:
            console.print(f"[yellow]skipped plugin '{b['name']}' from {b['source']}: {b['error']}[/]")
