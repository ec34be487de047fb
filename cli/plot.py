"""`rocket plot RUN`: the run's loss curves and learning rate as a PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rocket_cli.common import console, handle_errors


def register(app: typer.Typer) -> None:
    @app.command("plot")
    @handle_errors
    def plot(
        run: Path = typer.Argument(..., help="Run folder (holding metrics.jsonl) or a metrics.jsonl file."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="PNG to write (default RUN/metrics.png)."),
    ) -> None:
        """Plot a run's losses (action, align, per pair) and learning rate from metrics.jsonl to a PNG."""
        from rocket_core.analysis.curves import plot_curves
        from rocket_core.paths import check_output_file

        if output is not None:
            check_output_file(output, "--output")
        console.print(f"wrote {plot_curves(run, output)}", highlight=False, soft_wrap=True)
