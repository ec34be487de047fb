"""`rocket pull NAME`: fetch a plugin's default weights (or any Hub repo) into the Hugging Face cache."""
from __future__ import annotations

from typing import Optional

import typer

from rocket_cli.common import console, handle_errors
from rocket_core.errors import RocketError
from rocket_core.hub import as_repo_id, snapshot
from rocket_core.registry import get_registry

PULLABLE_KINDS: tuple[str, ...] = ("teacher", "vla")


def pull_target(name: str) -> tuple[str, tuple[str, ...] | None]:
    """(repo id, file patterns) for a plugin name (its `default_checkpoint`) or a Hub repo id (all files)."""
    registry = get_registry()
    for kind in PULLABLE_KINDS:
        cls = registry.plugins[kind].get(name)
        if cls is None:
            continue
        repo = cls.cls.default_checkpoint
        if not repo:
            raise RocketError(f"{kind} plugin '{name}' has no default weights to pull; give a Hub repo id instead")
        return repo, cls.cls.weight_patterns or None
    repo = as_repo_id(name)  # ORG/NAME or hf://ORG/NAME
    if repo is not None:
        return repo, None
    known = sorted(n for k in PULLABLE_KINDS for n, r in registry.plugins[k].items() if r.cls.default_checkpoint)
    raise RocketError(
        f"'{name}' is neither a plugin with default weights ({', '.join(known) or 'none installed'}) "
        "nor a Hub repo id ('owner/name')"
    )


def register(app: typer.Typer) -> None:
    @app.command("pull")
    @handle_errors
    def pull(
        name: str = typer.Argument(..., help="Plugin name (downloads its default weights) or a Hub repo id."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Branch, tag or commit to pin."),
    ) -> None:
        """Download weights into the Hugging Face cache (with a progress bar); later runs work offline.

        A benchmark plugin's name (e.g. `robotwin`) fetches that benchmark's assets instead.
        """
        bench = get_registry().plugins["benchmark"].get(name)
        if bench is not None:
            console.print(f"{name} assets are in {bench.cls.fetch_assets(log=console.print)}", highlight=False)
            return
        repo, patterns = pull_target(name)
        folder = snapshot(repo, revision, patterns, pulling=True)
        console.print(f"{repo}{'@' + revision if revision else ''} is in the cache: {folder}", highlight=False)
