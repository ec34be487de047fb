"""`rocket push`: upload a trained checkpoint (LoRA, heads, projector, layer map, spec, model card)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from rocket_cli.common import console, handle_errors
from rocket_core.errors import RocketError
from rocket_core.hub import as_repo_id, missing_path


def register(app: typer.Typer) -> None:
    @app.command("push")
    @handle_errors
    def push(
        checkpoint: Path = typer.Option(..., help="A run folder (its latest checkpoint) or a checkpoint folder."),
        repo_id: str = typer.Option(..., help="Hub model repo, ORG/NAME (created if missing)."),
        private: bool = typer.Option(False, help="Create the repo as private."),
        revision: str = typer.Option(None, help="Branch to push to."),
        folder: Path = typer.Option(None, help="Keep the assembled folder here instead of a temp folder."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Assemble and list the files; upload nothing."),
    ) -> None:
        """Upload a checkpoint to the Hugging Face Hub with a generated model card."""
        from rocket_core.publish import build_push_folder, push_folder

        if not checkpoint.exists():
            raise missing_path(checkpoint, "--checkpoint", hub_hint=False)
        repo = as_repo_id(repo_id)
        if repo is None:
            raise RocketError(f"--repo-id must be a Hub repo ORG/NAME, got '{repo_id}'")
        with tempfile.TemporaryDirectory() as tmp:
            out = build_push_folder(checkpoint, folder or Path(tmp) / "push", repo)
            files = sorted(out.iterdir())
            size = sum(p.stat().st_size for p in files)
            console.print(f"assembled {out}: " + ", ".join(p.name for p in files), highlight=False)
            if dry_run:
                console.print(f"dry run: would push {len(files)} files ({size / 1e6:.1f} MB) to {repo}"
                              f"{'@' + revision if revision else ''}{' (private)' if private else ''}; nothing uploaded",
                              highlight=False)
                return
            url = push_folder(out, repo, private, revision)
        console.print(f"pushed to {repo}: {url}", highlight=False)
