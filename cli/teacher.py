"""`rocket teacher preview`: look at what a teacher predicts, to check that its weights are sane."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rocket_cli.common import console, handle_errors
from rocket_core.paths import check_output_file
from rocket_core.registry import get_registry
from rocket_core.specs import TeacherSpec


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Inspect frozen teachers.", no_args_is_help=True)

    @group.command("preview")
    @handle_errors
    def preview(
        images: list[Path] = typer.Option(..., "--images", help="Image files of one size: --images a.png b.png"),
        more_images: Optional[list[Path]] = typer.Argument(None, hidden=True),
        output: Path = typer.Option(..., "-o", "--output", help="PNG file to write."),
        teacher: str = typer.Option("vggt", "--teacher", help="Teacher plugin (needs a depth head)."),
        checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Local folder/file or Hub repo id."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision to pin."),
        preset: Optional[str] = typer.Option(None, "--preset", help="Named configuration, e.g. 'tiny'."),
    ) -> None:
        """Write one picture with the inputs and the predicted depth and confidence."""
        check_output_file(output, "--output")
        spec = TeacherSpec(name=teacher, checkpoint=checkpoint, revision=revision, preset=preset)
        get_registry().get("teacher", teacher).preview(spec, [*images, *(more_images or [])], output)
        console.print(f"wrote {output}", highlight=False)

    app.add_typer(group, name="teacher")
