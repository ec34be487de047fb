"""`rocket doctor`: what works on this machine for training, serving and each benchmark, and the fixes.

Exit code 1 when a check that matters for what was asked fails (`--no-fail`: always 0), so a script can
gate on it: `rocket doctor --benchmark libero && rocket eval --benchmark libero_spatial ...`.
"""
from __future__ import annotations

import json

import typer

from rocket_cli.common import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    @handle_errors
    def doctor(
        quick: bool = typer.Option(False, help="Skip the simulator probes (no benchmark environment starts)."),
        benchmark: str = typer.Option(None, help="Only this benchmark's checks (plus the core ones); its failures "
                                      "are errors. Without it every benchmark is checked and only warns."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output: every check with its level."),
        no_fail: bool = typer.Option(False, "--no-fail", help="Always exit 0 (report only)."),
    ) -> None:
        """Probe torch/CUDA, rendering (EGL, OSMesa, Vulkan), benchmarks and assets, the HF cache and Hub, plugins."""
        from rocket_core.eval.base import find_benchmark, installed_benchmarks
        from rocket_core.eval.doctor import run_doctor

        benches = [find_benchmark(benchmark)[0]] if benchmark else list(installed_benchmarks().values())
        found = run_doctor(benches, probe_benchmarks=not quick, requested=benchmark is not None)
        errors = sum(f.level == "error" for f in found)
        if as_json:
            typer.echo(json.dumps([f.to_json() for f in found], indent=2))
        else:
            marks = {"ok": "[green]ok  [/]", "info": "[yellow]n/a [/]", "warning": "[yellow]warn[/]",
                     "error": "[red]FAIL[/]"}
            for f in found:
                c = f.check
                fix = f"  [dim]fix: {c.fix}[/]" if c.fix and c.ok is not True else ""
                console.print(f"{marks[f.level]} {c.name}: {c.detail}{fix}", highlight=False, soft_wrap=True)
            warnings = sum(f.level == "warning" for f in found)
            console.print(f"{len(found)} checks: {errors} failed, {warnings} warnings", highlight=False)
        if errors and not no_fail:
            raise typer.Exit(1)
