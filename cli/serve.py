"""`rocket serve`: a websocket policy server (observation -> action chunk) for any VLA plugin."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from cli.common import console, handle_errors
from rocket_core.errors import RocketError


def load_policy(checkpoint: Path | None, vla: str | None, preset: str | None, options: str | None,
                ema: bool | None = None, device: str | None = None):  # noqa: ANN201 - Policy (torch import deferred)
    from rocket_core.eval.policy import Policy

    if checkpoint is not None and vla is not None:
        raise RocketError("give either --checkpoint or --vla (with --preset), not both")
    if checkpoint is not None:
        return Policy.from_checkpoint(checkpoint, ema=ema, device=device)
    if vla is None:
        raise RocketError("nothing to serve: give --checkpoint DIR (a rocket align run or checkpoint) "
                          "or --vla NAME --preset tiny")
    try:
        opts = json.loads(options) if options else {}
    except ValueError as exc:
        raise RocketError(f"--options must be a JSON object ({exc})") from None
    return Policy.from_preset(vla, preset, opts, device=device)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @handle_errors
    def serve(
        checkpoint: Path = typer.Option(None, help="A rocket align run folder or checkpoint folder."),
        vla: str = typer.Option(None, help="Serve a plugin preset instead (random weights), e.g. openvla."),
        preset: str = typer.Option("tiny", help="Preset with --vla."),
        options: str = typer.Option(None, help="VLA options as JSON with --vla."),
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: all)."),
        port: int = typer.Option(8000, help="Port (0: any free port, printed)."),
        ema: bool | None = typer.Option(None, "--ema/--no-ema", help="Serve the EMA weights (default: when the checkpoint has them)."),
        device: str = typer.Option(None, help="torch device (default: where the plugin builds, CPU here)."),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
    ) -> None:
        """Serve a policy over websocket + msgpack-numpy; GET /healthz for the health check."""
        from rocket_core.eval.server import PolicyServer
        from rocket_core.threads import configure_threads

        policy = load_policy(checkpoint, vla, preset, options, ema, device)
        console.print(f"[dim]{configure_threads(threads, policy.model)}[/]")
        server = PolicyServer(policy, host=host, port=port)
        meta = policy.metadata()
        console.print(f"serving {meta['vla']} ({meta['source']}) on {server.url}: cameras {meta['cameras']}, "
                      f"state {meta['state_dim']}, actions {meta['chunk_size']}x{meta['action_dim']}, "
                      f"normalisation {'checkpoint' if meta['normalization']['action'] else 'none'}; "
                      f"health: http://{server.host}:{server.port}/healthz", highlight=False, soft_wrap=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
