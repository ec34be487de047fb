"""`rocket align`: fine-tune a VLA with ROCKET alignment (`--dry-run` resolves and prints the plan)."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from rocket_cli.common import (
    DEFAULT_PLUGINS,
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
from rocket_core.errors import RocketError
from rocket_core.recipes import list_recipes, load_recipe

if TYPE_CHECKING:  # torch-importing modules load inside the command, so `rocket --help` stays light
    from rocket_core.engine import AlignPlan
    from rocket_core.train.trainer import TrainResult


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
        "allow_nonfinite": ("data", "allow_nonfinite"),
        "report_to": ("training", "report_to"),
        "episodes": ("data", "episodes"),
        "max_frames": ("data", "max_frames"),
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


def _episode_list(value: str | None) -> list[int] | None:
    """--episodes "0,2" -> [0, 2]."""
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",")]
    except ValueError:
        raise RocketError(f"--episodes takes comma-separated episode indices, e.g. 0,2 (got '{value}')") from None


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
        + (f" episodes {s.data.episodes}" if s.data.episodes is not None else "")
        + (f" first {s.data.max_frames} frames" if s.data.max_frames is not None else "")
    )
    aug = s.data.augment
    console.print(f"[bold]VLA options[/] {s.vla.options}; action chunk {vi.chunk_size}, state dims {vi.state_dim}; "
                  f"weight decay {t.weight_decay:g}; augment crop {tuple(aug.crop_scale) if aug.enabled else 'off'}, "
                  f"teacher view {aug.teacher_view}", highlight=False)
    table = Table(title=f"{len(plan.layers.vla)} layer pairs")
    for col in ("pair", "VLA hidden state", "teacher layer", "projector width"):
        table.add_column(col, justify="right")
    for i, ((v, t), w) in enumerate(zip(plan.layers.pairs, plan.widths)):
        table.add_row(str(i), str(v), str(t), str(w))
    console.print(table)


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else time.strftime("%H:%M:%S", time.gmtime(seconds))


def _summary(result: TrainResult, plan: AlignPlan, num_processes: int, wall_s: float) -> None:
    """What happened: steps, time (the whole command, loading included), speed, losses, where things are."""
    t = plan.spec.training
    last = result.history[-1] if result.history else {}
    rate = result.steps_run / result.wall_s if result.wall_s > 0 else 0.0
    losses = (f"action loss {last['action_loss']:.4f}, align loss {last['align_loss']:.4f}" if last
              else "no step run")
    head = "interrupted" if result.interrupted else "done"
    console.print(f"{head}: step {result.steps} of {t.max_steps} in {_duration(wall_s)} ({rate:.2f} steps/s while "
                  f"training); {losses}", highlight=False, soft_wrap=True)
    console.print(f"run folder {result.run_dir}\nmetrics    {result.run_dir / 'metrics.jsonl'}\n"
                  f"checkpoint {result.checkpoint}", highlight=False, soft_wrap=True)
    if not result.interrupted:
        run = shlex.quote(str(result.run_dir))
        console.print(f"next: rocket plot {run} · rocket serve --checkpoint {run} · rocket push --checkpoint {run} "
                      "--repo-id ORG/NAME", highlight=False, soft_wrap=True)
    else:
        extra = f" --num-processes {num_processes}" if num_processes > 1 else ""
        console.print(f"continue with: rocket align --resume {shlex.quote(str(result.run_dir))}{extra}",
                      highlight=False, soft_wrap=True)


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
        episodes: str = typer.Option(None, help="Train on these episodes only (episode indices, e.g. 0,2)."),
        max_frames: int = typer.Option(None, min=1, help="Train on the first N frames (of the chosen episodes)."),
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
        resume: str = typer.Option(
            None, help="Continue a run exactly: its folder, one of its checkpoints, or a pushed run hf://ORG/NAME."
        ),
        checkpoint_minutes: float = typer.Option(
            10.0, min=0, help="Also write a checkpoint every N minutes of wall time (0: off); Ctrl-C always writes one."
        ),
        num_processes: int = typer.Option(1, min=1, help="Data-parallel processes (DDP)."),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and validate, print the plan, load nothing."),
        allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="Train on NaN/inf states or actions."),
        report_to: str = typer.Option(
            None, help="Also send metrics to a tracker: tensorboard, wandb or none (default none; metrics.jsonl always)."
        ),
    ) -> None:
        """Align a VLA's hidden states to a frozen 3D teacher at several layers at once."""
        started = time.monotonic()
        from rocket_core.engine import plan_run
        from rocket_core.specs import build_spec, deep_merge
        from rocket_core.train.run import check_inputs, choose_run_dir, load_resume, relaunch

        if num_processes > 1 and "WORLD_SIZE" not in os.environ and not dry_run:
            raise typer.Exit(relaunch(sys.argv[1:], num_processes))
        overrides = _overrides(
            vla=vla, teacher=teacher, projector=projector, layers=layers, preset=preset, data=data,
            coefficient=coefficient, ensemble_size=ensemble_size, pooling=pooling, vla_checkpoint=vla_checkpoint,
            teacher_checkpoint=teacher_checkpoint, seed=seed, max_steps=max_steps, batch_size=batch_size,
            save_every=save_every, teacher_cache=teacher_cache, allow_nonfinite=allow_nonfinite or None,
            report_to=report_to,
            episodes=_episode_list(episodes), max_frames=max_frames,
        )
        resumed = load_resume(resume) if resume is not None else None
        if resumed is not None:
            base = resumed.spec.model_dump(mode="json")  # the run's own spec; flags may only extend it
        else:
            base = load_recipe(recipe).spec if recipe else None
        spec = build_spec(config, overrides, deep_merge(DEFAULT_PLUGINS, base or {}))
        plan = plan_run(spec, recorded=resumed.plugins if resumed is not None else None)
        world = int(os.environ.get("WORLD_SIZE", num_processes))
        if resumed is not None:
            resumed.check(plan, world)
        run_dir = choose_run_dir(output_dir, resumed, plan, dry_run)
        check_inputs(spec)
        main = os.environ.get("RANK", "0") == "0"
        if resumed is not None:
            if main:
                console.print(resumed.message(run_dir, spec.training.max_steps), highlight=False, soft_wrap=True)
            if resumed.finished(spec.training.max_steps):
                return
        if main:
            print_plan(plan)
        if dry_run:
            return
        from rocket_core.threads import configure_threads
        from rocket_core.train.trainer import Trainer

        try:
            trainer = Trainer(plan, run_dir, resume=resumed.ckpt if resumed else None,
                              checkpoint_minutes=checkpoint_minutes)
            choice = configure_threads(threads, trainer.module, trainer.teacher)  # type: ignore[arg-type]  # an nn.Module
            if main:
                console.print(f"[dim]{choice}[/]")
            result = trainer.train()
        except KeyboardInterrupt:
            from rocket_core.train.checkpoint import latest_name

            kept = latest_name(run_dir) if run_dir.is_dir() else None
            console.print(f"aborted; the last checkpoint ({kept}) is kept: continue with rocket align --resume "
                          f"{shlex.quote(str(run_dir))}" if kept else "aborted before the first checkpoint",
                          highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        if main:
            _summary(result, plan, world, time.monotonic() - started)
        if result.interrupted:
            raise typer.Exit(130)
