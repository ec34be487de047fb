"""`rocket profile`: layer CKA (+ a layer map for `rocket align`), gradient conflict, projector similarity,
and side-by-side comparison of two results. Each command writes JSON + PNG (see docs/profile.md)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

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
from rocket_core.paths import check_output_dir, check_output_file
from rocket_core.progress import Bar
from rocket_core.specs import RunSpec, build_spec

if TYPE_CHECKING:  # torch-importing modules load when a command runs, so `rocket profile --help` stays light
    from rocket_core.engine import AlignPlan


def _prof() -> Any:
    """The analysis code (it imports torch)."""
    from rocket_core.analysis import profile

    return profile

_SPEC_PATHS = {
    "vla": ("vla", "name"),
    "teacher": ("teacher", "name"),
    "projector": ("projector", "name"),
    "layers": ("layers",),
    "vla_checkpoint": ("vla", "checkpoint"),
    "teacher_checkpoint": ("teacher", "checkpoint"),
    "data": ("data", "dataset"),
}


def _spec_from_flags(config: Path | None, preset: str | None, **flags: Any) -> RunSpec:
    """Like `rocket align`'s flags: a config file, then the flags given (None leaves the file's value)."""
    out: dict[str, Any] = {}
    if preset is not None:
        for side in ("vla", "teacher"):
            out.setdefault(side, {})["preset"] = preset
    for flag, value in flags.items():
        if value is None:
            continue
        *parents, leaf = _SPEC_PATHS[flag]
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return build_spec(config, out, DEFAULT_PLUGINS)


def _check_preset(spec: RunSpec, preset: str | None) -> None:
    if preset is not None and preset not in (spec.vla.preset, spec.teacher.preset):
        raise RocketError(f"--preset {preset} does not match the checkpoint (vla preset {spec.vla.preset!r}, "
                          f"teacher preset {spec.teacher.preset!r}); drop --preset, the checkpoint's spec is used")


@contextlib.contextmanager
def _bar(label: str, total: int) -> Iterator[Any]:
    """The shared progress bar over samples; yields `advance(n)`."""
    with Bar(label, total, console=console) as bar:
        yield lambda n: bar.update(advance=n, text="samples")


def _run_models(checkpoint: Path | None, spec_flags: dict[str, Any], preset: str | None, config: Path | None,
                data: str | None, any_layers: bool = False, threads: int | None = None
                ) -> tuple[AlignPlan, Any, Any, dict[str, Any]]:
    """A trained run (checkpoint) or a fresh one from the flags: (plan, AlignModule, teacher, source fields).

    Built in `rocket align`'s order and seed, so a fresh tiny model is the one `rocket align` starts from.
    `any_layers`: a spec whose layer map does not resolve (no default) still builds (CKA ignores pairs).
    """
    from rocket_core.threads import configure_threads

    if checkpoint is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in spec_flags.items() if v is not None]
        if given or config is not None:
            raise RocketError(f"{', '.join(given or ['--config'])} cannot be combined with --checkpoint: "
                              "the checkpoint's own spec is used (only --data may replace its dataset)")
        run = _prof().load_trained(checkpoint, dataset=data)
        _check_preset(run.plan.spec, preset)
        console.print(f"[dim]{configure_threads(threads, run.module, run.teacher)}[/]")
        return run.plan, run.module, run.teacher, {"checkpoint": str(run.path), "step": run.checkpoint.step}
    spec = _spec_from_flags(config, preset, data=data, **spec_flags)
    try:
        from rocket_core.engine import plan_run

        plan = plan_run(spec)
    except RocketError:
        if not any_layers:
            raise
        plan = _prof().feature_plan(spec)
    module, teacher = _prof().build_models(plan)
    console.print(f"[dim]{configure_threads(threads, module, teacher)}[/]")
    return plan, module, teacher, {"checkpoint": None, "step": 0}


def _print_files(files: dict[str, Path]) -> None:
    for what, path in files.items():
        console.print(f"wrote {what}: {path}")


def register(app: typer.Typer) -> None:
    profile_app = typer.Typer(
        help="Analyses behind ROCKET: layer CKA (+ layer map), gradient conflict, projector similarity, compare.",
        no_args_is_help=True,
    )
    app.add_typer(profile_app, name="profile")

    @profile_app.command("cka")
    @handle_errors
    def cka(
        vla: VlaOpt = None,
        teacher: TeacherOpt = None,
        preset: PresetOpt = None,
        config: ConfigOpt = None,
        checkpoint: Path = typer.Option(None, help="Profile a trained run's VLA (run or checkpoint folder)."),
        vla_checkpoint: VlaCheckpointOpt = None,
        teacher_checkpoint: TeacherCheckpointOpt = None,
        data: DataOpt = None,
        samples: int = typer.Option(2048, min=1, help="Samples (all of the dataset if it has fewer)."),
        layers: str = typer.Option("all", help="'all' or 'VLA:TEACHER', each 'all' or e.g. '0-32' / '2,4,8'."),
        method: str = typer.Option("auto", help="auto (exact if it fits --memory-budget), exact or sketch."),
        sketch_dim: int = typer.Option(8192, min=1, help="CountSketch dimension d of the streamed path."),
        memory_budget: float = typer.Option(4.0, min=0, help="GB the exact path may keep in memory."),
        batch_size: int = typer.Option(8, min=1, help="Samples per forward pass."),
        seed: int = typer.Option(0, help="Seed of the sample draw and of the sketch."),
        device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
        output_dir: Path = typer.Option(Path("profiles/cka"), "--output-dir", "-o", help="Where the files go."),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
    ) -> None:
        """CKA between every VLA hidden state and every teacher layer; Hungarian matching; a layer map."""
        check_output_dir(output_dir, "--output-dir")
        if method not in ("auto", "exact", "sketch"):
            raise RocketError(f"--method '{method}' is not one of auto, exact, sketch")
        dev = _prof().resolve_device(device)
        flags = {"vla": vla, "teacher": teacher, "vla_checkpoint": vla_checkpoint, "teacher_checkpoint": teacher_checkpoint}
        plan, module, teacher_model, source = _run_models(checkpoint, flags, preset, config, data, any_layers=True,
                                                          threads=threads)
        vla_layers, teacher_layers = _prof().parse_cka_layers(layers, plan.vla, plan.vla_info, plan.teacher,
                                                           plan.teacher_info)
        dataset = _prof().analysis_dataset(plan)
        indices = _prof().sample_indices(len(dataset), samples, seed)
        if len(indices) < samples:
            console.print(f"[yellow]the dataset has {len(indices)} samples; using all of them[/]")
        vla_model = module.vla.to(dev)
        teacher_model.to(dev)
        with _bar("cka", len(indices)) as advance:
            doc = _prof().profile_cka(plan, vla_model, teacher_model, dataset, indices, vla_layers, teacher_layers,
                                   batch_size, method, sketch_dim, memory_budget * 1e9, seed, dev, advance,
                                   source)
        files = _prof().save_cka(doc, output_dir)
        table = Table(title=f"one-to-one matching ({len(doc['matching']['pairs'])} pairs, "
                            f"mean CKA {doc['matching']['average_cka']:.3f}; {doc['method']})")
        for col in ("VLA hidden state", "teacher layer", "CKA", "best teacher for this VLA layer"):
            table.add_column(col, justify="right")
        best = doc["matching"]["best_teacher_per_vla"]
        for p in doc["matching"]["pairs"]:
            table.add_row(str(p["vla"]), str(p["teacher"]), f"{p['cka']:.3f}", str(best[str(p["vla"])]))
        console.print(table)
        _print_files(files)

    def _checkpoint_command(kind: str, checkpoint: Path | None, flags: dict[str, Any], preset: str | None,
                            config: Path | None, data: str | None, samples: int, seed: int, device: str,
                            output_dir: Path, run: Any, threads: int | None) -> tuple[dict[str, Any], dict[str, Path]]:
        check_output_dir(output_dir, "--output-dir")
        dev = _prof().resolve_device(device)
        plan, module, teacher_model, source = _run_models(checkpoint, flags, preset, config, data, threads=threads)
        dataset = _prof().analysis_dataset(plan)
        indices = _prof().sample_indices(len(dataset), samples, seed)
        teacher_model.to(dev)
        with _bar(kind, len(indices)) as advance:
            doc = run(plan, module, teacher_model, dataset, indices, dev, advance, source)
        files = _prof().save_result(doc, output_dir)
        return doc, files

    @profile_app.command("grad-conflict")
    @handle_errors
    def grad_conflict(
        checkpoint: Path = typer.Option(None, help="Trained run or checkpoint folder (else a fresh model from flags)."),
        params: str = typer.Option(None, help="Monitored parameters: comma-separated name substrings "
                                   "(default: the VLA plugin's `profile_params`)."),
        all_params: bool = typer.Option(False, "--all-params", help="Monitor matching non-LoRA parameters too."),
        vla: VlaOpt = None,
        teacher: TeacherOpt = None,
        projector: ProjectorOpt = None,
        layers: LayersOpt = None,
        preset: PresetOpt = None,
        config: ConfigOpt = None,
        data: str = typer.Option(None, help="LeRobot dataset (default: the run's)."),
        samples: int = typer.Option(32, min=1, help="Samples (reference: 32)."),
        batch_size: int = typer.Option(None, min=1, help="Samples per batch (default: the run's batch size)."),
        seed: int = typer.Option(0, help="Seed of the sample draw."),
        device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
        output_dir: Path = typer.Option(Path("profiles/grad-conflict"), "--output-dir", "-o"),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
    ) -> None:
        """Cosine between the pairs' alignment-loss gradients on monitored parameters (L x L, batch mean)."""
        patterns = [p.strip() for p in (params or "").split(",") if p.strip()]
        if params is not None and not patterns:
            raise RocketError("--params needs at least one name substring, e.g. 'layers.0.'")

        def run(plan: AlignPlan, module: Any, teacher_model: Any, dataset: Any, indices: list[int], dev: Any,
                advance: Any, source: dict[str, Any]) -> dict[str, Any]:
            patterns[:] = patterns or plan.vla.profile_params
            if not patterns:
                raise RocketError(f"VLA '{plan.vla.name}' names no default parameters to monitor; pass --params")
            return _prof().profile_grad_conflict(plan, module, teacher_model, dataset, indices, patterns, not all_params,
                                              batch_size, dev, advance, source)

        doc, files = _checkpoint_command(
            "grad-conflict", checkpoint, {"vla": vla, "teacher": teacher, "projector": projector, "layers": layers},
            preset, config, data, samples, seed, device, output_dir, run, threads)
        mean = doc["summary"]["mean_off_diagonal"]
        console.print(f"{doc['params']['tensors']} monitored tensors ({doc['params']['numel']:,} values), "
                      f"{doc['batches']} batches; mean off-diagonal cosine "
                      + (f"{mean:.4f}" if mean is not None else "n/a (one pair)"))
        _print_files(files)

    @profile_app.command("projector-similarity")
    @handle_errors
    def projector_similarity(
        checkpoint: Path = typer.Option(None, help="Trained run or checkpoint folder (else a fresh model from flags)."),
        vla: VlaOpt = None,
        teacher: TeacherOpt = None,
        projector: ProjectorOpt = None,
        layers: LayersOpt = None,
        preset: PresetOpt = None,
        config: ConfigOpt = None,
        data: str = typer.Option(None, help="LeRobot dataset (default: the run's)."),
        samples: int = typer.Option(128, min=1, help="Samples (reference: 128)."),
        batch_size: int = typer.Option(8, min=1, help="Samples per forward pass."),
        seed: int = typer.Option(0, help="Seed of the sample draw."),
        device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
        output_dir: Path = typer.Option(Path("profiles/projector-similarity"), "--output-dir", "-o"),
        threads: int = typer.Option(None, min=1, help="Torch threads (default: 1 for small models, else all usable cores)."),
    ) -> None:
        """Token-mean cosine between pairs of projector inputs, outputs and targets; output-target cosine."""

        def run(plan: AlignPlan, module: Any, teacher_model: Any, dataset: Any, indices: list[int], dev: Any,
                advance: Any, source: dict[str, Any]) -> dict[str, Any]:
            return _prof().profile_projector_similarity(plan, module, teacher_model, dataset, indices, batch_size, dev,
                                                     advance, source)

        doc, files = _checkpoint_command(
            "projector-similarity", checkpoint,
            {"vla": vla, "teacher": teacher, "projector": projector, "layers": layers},
            preset, config, data, samples, seed, device, output_dir, run, threads)
        table = Table(title="output vs target cosine per pair")
        for col in ("pair", "VLA hidden state", "teacher layer", "cosine"):
            table.add_column(col, justify="right")
        for p in doc["output_target_cosine"]:
            table.add_row(str(p["pair"]), str(p["vla"]), str(p["teacher"]), f"{p['cosine']:.4f}")
        console.print(table)
        _print_files(files)

    @profile_app.command("compare")
    @handle_errors
    def compare(
        a: Path = typer.Argument(..., help="First result JSON (e.g. the shared-projector run)."),
        b: Path = typer.Argument(..., help="Second result JSON of the same kind."),
        output: Path = typer.Option(..., "--output", "-o", help="PNG to write."),
        matrix: str = typer.Option(None, help="Which matrix (default: the kind's main one)."),
        labels: str = typer.Option(None, help="Two panel titles 'A,B' (default: the file names)."),
    ) -> None:
        """Two results of one kind side by side on one colour scale, with their difference A - B."""
        check_output_file(output, "--output")
        names = (a.stem if a.parent == b.parent else f"{a.parent.name}/{a.stem}",
                 b.stem if a.parent == b.parent else f"{b.parent.name}/{b.stem}")
        if labels is not None:
            parts = [p.strip() for p in labels.split(",")]
            if len(parts) != 2 or not all(parts):
                raise RocketError("--labels takes two names separated by a comma, e.g. 'shared,independent'")
            names = (parts[0], parts[1])
        path = _prof().save_compare(_prof().read_result(a), _prof().read_result(b), output, names, matrix)
        console.print(f"wrote {path}")
