"""`rocket doctor`: what works on this machine for training, serving and each benchmark, and the fixes."""
from __future__ import annotations

import json

import typer

from cli.common import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    @handle_errors
    def doctor(
        quick: bool = typer.Option(False, help="Skip the simulator probes (no benchmark environment starts)."),
        benchmark: str = typer.Option(None, help="Only this benchmark's checks (plus the common ones)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Probe torch/CUDA, rendering (EGL, OSMesa, Vulkan), benchmarks and assets, the HF cache, plugins."""
        from rocket_core.eval.base import find_benchmark, installed_benchmarks
        from rocket_core.eval.doctor import run_checks

        benches = [find_benchmark(benchmark)[0]] if benchmark else list(installed_benchmarks().values())
        checks = run_checks(benches, probe_benchmarks=not quick)
        if as_json:
            typer.echo(json.dumps([c.__dict__ for c in checks], indent=2))
            return
        marks = {True: "[green]ok  [/]", False: "[red]FAIL[/]", None: "[yellow]n/a [/]"}
        for c in checks:
            fix = f"  [dim]fix: {c.fix}[/]" if c.fix and c.ok is not True else ""
            console.print(f"{marks[c.ok]} {c.name}: {c.detail}{fix}", highlight=False, soft_wrap=True)
