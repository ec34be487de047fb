"""`rocket align`: fine-tune a VLA with ROCKET alignment (`--dry-run` resolves and prints the plan)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.common import console, handle_errors
from rocket_core.engine import AlignPlan, plan_run
from rocket_core.errors import RocketError
from rocket_core.specs import build_spec


def _overrides(**flags: Any) -> dict[str, Any]:
    """CLI flags given on the command line -> nested spec overrides (unset flags leave file values alone)."""
    paths = {
        "vla": ("vla", "name"),
        "teacher": ("teacher", "name"),
        "projector": ("projector", "name"),
        "layers": ("layers",),
        "coefficient": ("alignment", "coefficient"),
        "ensemble_size": ("alignment", "ensemble_size"),
        "pooling": ("alignment", "pooling"),
        "vla_checkpoint": ("vla", "checkpoint"),
        "teacher_checkpoint": ("teacher", "checkpoint"),
        "seed": ("training", "seed"),
    }
    out: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        if flag == "preset":
            for side in ("vla", "teacher"):
                out.setdefault(side, {})["preset"] = value
            continue
        *parents, leaf = paths[flag]
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def print_plan(plan: AlignPlan) -> None:
    s, vi, ti = plan.spec, plan.vla_info, plan.teacher_info
    console.print(
        f"[bold]VLA[/] {plan.vla.name}: {vi.num_blocks} blocks, hidden {vi.hidden_size}, "
        f"{vi.num_vision_tokens} vision tokens"
    )
    console.print(
        f"[bold]teacher[/] {plan.teacher.name}: {ti.num_layers} layers, width {ti.feature_dim}, "
        f"patch grid {ti.patch_grid[0]}x{ti.patch_grid[1]} at {ti.image_size[0]}x{ti.image_size[1]}"
    )
    a = s.alignment
    console.print(
        f"[bold]projector[/] {plan.projector.name} ({plan.projector.description}); "
        f"{plan.projector_params:,} parameters; ensemble {a.ensemble_size}"
    )
    console.print(
        f"[bold]loss[/] action + {a.coefficient} x align; pooling {a.pooling}, "
        f"teacher PE {'on' if a.teacher_pe else 'off'}"
    )
    table = Table(title=f"{len(plan.layers.vla)} layer pairs")
    for col in ("pair", "VLA hidden state", "teacher layer", "projector width"):
        table.add_column(col, justify="right")
    for i, ((v, t), w) in enumerate(zip(plan.layers.pairs, plan.widths)):
        table.add_row(str(i), str(v), str(t), str(w))
    console.print(table)


def register(app: typer.Typer) -> None:
    @app.command("align")
    @handle_errors
    def align(
        vla: str = typer.Option(None, help="VLA plugin name (see `rocket plugins`)."),
        teacher: str = typer.Option(None, help="Teacher plugin name."),
        projector: str = typer.Option(None, help="Projector strategy: rocket, shared, independent, single."),
        layers: str = typer.Option(None, help="'balanced:K', 'v1,v2:t1,t2', or a layer-map file."),
        config: Path = typer.Option(None, "--config", "-c", help="Spec file (YAML, TOML or JSON)."),
        preset: str = typer.Option(None, help="Preset for both models, e.g. tiny."),
        coefficient: float = typer.Option(None, help="Alignment loss coefficient."),
        ensemble_size: int = typer.Option(None, help="Projectors per pair (losses averaged)."),
        pooling: str = typer.Option(None, help="Teacher token pooling: bilinear or random."),
        vla_checkpoint: str = typer.Option(None, help="VLA weights: Hub repo id or local path."),
        teacher_checkpoint: str = typer.Option(None, help="Teacher weights: Hub repo id or local path."),
        seed: int = typer.Option(None, help="Random seed."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and validate, print the plan, load nothing."),
    ) -> None:
        """Align a VLA's hidden states to a frozen 3D teacher at several layers at once."""
        spec = build_spec(
            config,
            _overrides(
                vla=vla, teacher=teacher, projector=projector, layers=layers, preset=preset,
                coefficient=coefficient, ensemble_size=ensemble_size, pooling=pooling,
                vla_checkpoint=vla_checkpoint, teacher_checkpoint=teacher_checkpoint, seed=seed,
            ),
        )
        plan = plan_run(spec)
        print_plan(plan)
        if not dry_run:
            raise RocketError("training is not available in this version yet; run with --dry-run to check a plan")
