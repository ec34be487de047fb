"""`rocket align`: fine-tune a VLA with ROCKET alignment (`--dry-run` resolves and prints the plan)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from cli.common import (
    ConfigOpt,
    DataOpt,
    LayersOpt,
    PresetOpt,
    ProjectorOpt,
    TeacherCheckpointOpt,
    TeacherOpt,
    VlaCheckpointOpt,
    VlaOpt,
    console,
    handle_errors,
)
from rocket_core.engine import AlignPlan, plan_run
from rocket_core.errors import RocketError
from rocket_core.hub import snapshot
from rocket_core.recipes import list_recipes, load_recipe
from rocket_core.specs import build_spec
from rocket_core.train.checkpoint import load_checkpoint
from rocket_core.train.trainer import Trainer


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
        "max_steps": ("training", "max_steps"),
        "batch_size": ("training", "batch_size"),
        "save_every": ("training", "save_every"),
        "data": ("data", "dataset"),
        "teacher_cache": ("training", "teacher_cache"),
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
    t = s.training
    schedule = {"multistep": f"multistep x{t.gamma} at {t.milestones}", "cosine":
                f"cosine to {t.min_learning_rate:g}", "constant": "constant"}[t.schedule]
    tuning = f"LoRA r {t.lora.rank}, alpha {t.lora.alpha:g}, dropout {t.lora.dropout:g}" if t.finetune == "lora" else "full"
    console.print(
        f"[bold]training[/] {t.max_steps} steps, batch {t.batch_size}/process x accum {t.grad_accum}, AdamW lr "
        f"{t.learning_rate:g} betas {tuple(t.betas)}, {schedule}, warmup {t.warmup_steps}, clip {t.clip_grad_norm}, "
        f"EMA {t.ema_decay}; {tuning}; data {s.data.dataset or 'bundled'}"
    )
    table = Table(title=f"{len(plan.layers.vla)} layer pairs")
    for col in ("pair", "VLA hidden state", "teacher layer", "projector width"):
        table.add_column(col, justify="right")
    for i, ((v, t), w) in enumerate(zip(plan.layers.pairs, plan.widths)):
        table.add_row(str(i), str(v), str(t), str(w))
    console.print(table)


def _relaunch(num_processes: int) -> None:
    """Run this same command under torch.distributed.run with N processes (DDP; gloo on CPU)."""
    args = list(sys.argv[1:])
    i = args.index("--num-processes")
    del args[i : i + 2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
           "-m", "cli", *args]
    raise typer.Exit(subprocess.call(cmd))


def register(app: typer.Typer) -> None:
    @app.command("recipes")
    @handle_errors
    def recipes() -> None:
        """List the paper recipes usable with `rocket align --recipe NAME`."""
        table = Table(title="rocket recipes")
        for col in ("name", "description", "notes"):
            table.add_column(col, overflow="fold")
        for r in list_recipes():
            table.add_row(r.name, r.description, r.paper)
        console.print(table)

    @app.command("align")
    @handle_errors
    def align(
        vla: VlaOpt = None,
        teacher: TeacherOpt = None,
        projector: ProjectorOpt = None,
        layers: LayersOpt = None,
        recipe: str = typer.Option(None, help="Start from a paper recipe (see `rocket recipes`)."),
        config: ConfigOpt = None,
        preset: PresetOpt = None,
        data: DataOpt = None,
        coefficient: float = typer.Option(None, help="Alignment loss coefficient (0: no teacher at all)."),
        ensemble_size: int = typer.Option(None, help="Projectors per pair (losses averaged)."),
        pooling: str = typer.Option(None, help="Teacher token pooling: bilinear or random."),
        vla_checkpoint: VlaCheckpointOpt = None,
        teacher_checkpoint: TeacherCheckpointOpt = None,
        seed: int = typer.Option(None, help="Random seed."),
        max_steps: int = typer.Option(None, help="Optimizer steps."),
        batch_size: int = typer.Option(None, help="Samples per process and micro-step."),
        save_every: int = typer.Option(None, help="Checkpoint every N steps (0: only at the end)."),
        teacher_cache: str = typer.Option(None, help="Teacher-feature cache folder (filled on the fly, see docs/cache.md)."),
        output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Run folder (default runs/<vla>-<teacher>-<time>)."),
        resume: Path = typer.Option(
            None, help="Continue a run exactly: its folder, one of its checkpoints, or a pushed Hub repo ORG/NAME."
        ),
        num_processes: int = typer.Option(1, min=1, help="Data-parallel processes (DDP)."),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and validate, print the plan, load nothing."),
    ) -> None:
        """Align a VLA's hidden states to a frozen 3D teacher at several layers at once."""
        if num_processes > 1 and "WORLD_SIZE" not in os.environ and not dry_run:
            _relaunch(num_processes)
        overrides = _overrides(
            vla=vla, teacher=teacher, projector=projector, layers=layers, preset=preset, data=data,
            coefficient=coefficient, ensemble_size=ensemble_size, pooling=pooling, vla_checkpoint=vla_checkpoint,
            teacher_checkpoint=teacher_checkpoint, seed=seed, max_steps=max_steps, batch_size=batch_size,
            save_every=save_every, teacher_cache=teacher_cache,
        )
        if resume is not None:
            resume = resume if resume.exists() else snapshot(str(resume), None, None, pull_name=str(resume))
            base = load_checkpoint(resume).spec.model_dump(mode="json")  # the run's own spec; flags may extend it
        else:
            base = load_recipe(recipe).spec if recipe else None
        spec = build_spec(config, overrides, base)
        plan = plan_run(spec)
        run_dir = output_dir or (resume if resume is not None and (resume / "checkpoints").is_dir() else None)
        run_dir = run_dir or Path("runs") / f"{plan.vla.name}-{plan.teacher.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if resume is None and not dry_run and (run_dir / "checkpoints").is_dir():
            raise RocketError(f"'{run_dir}' already holds a run; continue it with --resume {run_dir} "
                              "or choose another --output-dir")
        main = os.environ.get("RANK", "0") == "0"
        if main:
            print_plan(plan)
        if dry_run:
            return
        from rocket_core.threads import configure_threads

        trainer = Trainer(plan, run_dir, resume=resume)
        choice = configure_threads(threads, trainer.module, trainer.teacher)
        if main:
            console.print(f"[dim]{choice}[/]")
        result = trainer.train()
        if main:
            last = result.history[-1] if result.history else {}
            console.print(f"done: {result.steps} steps, action loss {last.get('action_loss', float('nan')):.4f}, "
                          f"align loss {last.get('align_loss', float('nan')):.4f}; checkpoint {result.checkpoint}")
