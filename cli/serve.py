"""`rocket serve`: a websocket policy server (observation -> action chunk) for any VLA plugin."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from rocket_cli.common import console, handle_errors
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


def check_device(device: str | None) -> None:
    """Refuse a device torch cannot use here, before the policy is built."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise RocketError(f"unknown --device '{device}'; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise RocketError(f"--device {device}: CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise RocketError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise RocketError(f"--device {device}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise RocketError(f"--device {device}: not supported for serving; use cpu or cuda[:N]")


def register(app: typer.Typer) -> None:
    @app.command("serve")
    @handle_errors
    def serve(
        checkpoint: Path = typer.Option(None, help="A rocket align run folder or checkpoint folder."),
        vla: str = typer.Option(None, help="Serve a plugin preset instead (random weights), e.g. openvla."),
        preset: str = typer.Option("tiny", help="Preset with --vla."),
        options: str = typer.Option(None, help="VLA options as JSON with --vla."),
        host: str = typer.Option("127.0.0.1", help="Interface to listen on (another than loopback needs --token)."),
        port: int = typer.Option(8000, help="Port (0: any free port, printed)."),
        ema: bool | None = typer.Option(None, "--ema/--no-ema", help="Serve the EMA weights (default: when the checkpoint has them)."),
        device: str = typer.Option(None, help="torch device (default: where the plugin builds, CPU here)."),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
        token: str = typer.Option(None, envvar="ROCKET_SERVE_TOKEN", show_default=False,
                                  help="Shared secret every client must send (rocket eval --token); 16+ characters."),
        insecure: bool = typer.Option(False, help="Allow a non-loopback --host without a token (trusted networks)."),
        allow_origin: list[str] = typer.Option([], metavar="ORIGIN",
                                               help="A browser Origin to accept (repeatable; default: none)."),
        max_image_side: int = typer.Option(None, min=1, help="Longest image side accepted (default: 4x the policy's input side)."),
        max_task_tokens: int = typer.Option(256, min=1, help="Longest task instruction accepted, in tokens."),
        max_connections: int = typer.Option(64, min=1, help="Open connections at most (more get HTTP 503)."),
        idle_timeout: float = typer.Option(120.0, min=1, help="Seconds without a request before a connection is closed."),
    ) -> None:
        """Serve a policy over websocket + msgpack (numeric arrays only); GET /healthz for the health check."""
        from rocket_core.eval.server import Limits, PolicyServer, check_bind
        from rocket_core.threads import configure_threads

        check_bind(host, port, token, insecure)
        check_device(device)
        policy = load_policy(checkpoint, vla, preset, options, ema, device)
        console.print(f"[dim]{configure_threads(threads, policy.model)}[/]")
        limits = Limits(image_side=max_image_side, task_tokens=max_task_tokens, connections=max_connections,
                        idle_timeout=idle_timeout, queue=max_connections)
        server = PolicyServer(policy, host=host, port=port, token=token, insecure=insecure,
                              origins=tuple(allow_origin), limits=limits)
        meta = policy.metadata()
        console.print(f"serving {meta['vla']} ({meta['source']}) on {server.url}: cameras {meta['cameras']}, "
                      f"state {meta['state_dim']}, actions {meta['chunk_size']}x{meta['action_dim']}, "
                      f"normalisation {'checkpoint' if meta['normalization']['action'] else 'none'}; "
                      f"health: http://{server.host}:{server.port}/healthz; "
                      f"{'token required' if token else 'no token'}", highlight=False, soft_wrap=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
