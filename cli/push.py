"""`rocket push`: upload a trained checkpoint (LoRA, heads, projector, layer map, spec, model card)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from cli.common import console, handle_errors
from rocket_core.publish import build_push_folder, push_folder


def register(app: typer.Typer) -> None:
    @app.command("push")
    @handle_errors
    def push(
        checkpoint: Path = typer.Option(..., help="A run folder (its latest checkpoint) or a checkpoint folder."),
        repo_id: str = typer.Option(..., help="Hub model repo, ORG/NAME (created if missing)."),
        private: bool = typer.Option(False, help="Create the repo as private."),
        revision: str = typer.Option(None, help="Branch to push to."),
        folder: Path = typer.Option(None, help="Keep the assembled folder here instead of a temp folder."),
    ) -> None:
        """Upload a checkpoint to the Hugging Face Hub with a generated model card."""
        with tempfile.TemporaryDirectory() as tmp:
            out = build_push_folder(checkpoint, folder or Path(tmp) / "push")
            console.print(f"assembled {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
            url = push_folder(out, repo_id, private, revision)
        console.print(f"pushed to {repo_id}: {url}")
