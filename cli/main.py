"""Entry point of the `rocket` command: each command module adds itself through `register(app)`."""
from __future__ import annotations

import typer

from cli import align, cache, doctor, export, layers, plugins_cmd, profile, pull, push, serve, teacher
from cli import eval as eval_cmd

app = typer.Typer(
    name="rocket",
    help="Align a 2D vision-language-action model to a frozen 3D vision teacher (ROCKET).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

for module in (plugins_cmd, layers, align, cache, profile, teacher, pull, push, serve, eval_cmd, export, doctor):
    module.register(app)


def run() -> None:
    """Console-script entry point."""
    app()
