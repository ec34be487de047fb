"""`rocket cache build`: compute the teacher-feature cache ahead of training (docs/cache.md)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from rocket_cli.common import DEFAULT_PLUGINS, console, handle_errors
from rocket_core.errors import RocketError
from rocket_core.paths import check_output_dir
from rocket_core.progress import Bar


def _layers(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise RocketError(f"--layers must be comma-separated teacher layer indices, e.g. 4,11,17,23 (got '{text}')") from None


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Teacher-feature cache (targets computed once, read during training).", no_args_is_help=True)

    @group.command("build")
    @handle_errors
    def build(
        teacher: str = typer.Option("vggt", "--teacher", help="Teacher plugin."),
        checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Teacher weights: local path or Hub repo id."),
        revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision of the teacher weights."),
        preset: Optional[str] = typer.Option(None, "--preset", help="Teacher preset, e.g. 'tiny' (random weights)."),
        data: Optional[str] = typer.Option(None, "--data", help="LeRobot dataset root or Hub id (default: bundled)."),
        layers: Optional[str] = typer.Option(None, "--layers", help="Teacher layers to store, e.g. 4,11,17,23 (-1 = last)."),
        tokens: Optional[int] = typer.Option(None, "--tokens", min=1,
                                             help="Store pooled targets for a VLA with this many vision tokens "
                                                  "(bilinear pooling); default: raw patch grids."),
        teacher_pe: bool = typer.Option(True, "--teacher-pe/--no-teacher-pe", help="Pooled targets: add the 2-D sin-cos PE."),
        vla_cameras: Optional[int] = typer.Option(None, "--vla-cameras", min=1,
                                                  help="Pooled targets: the VLA's camera slots when it has more than "
                                                       "the dataset (extra slots get zero teacher features)."),
        config: Optional[Path] = typer.Option(None, "--config", help="Run spec of `rocket align`: take the teacher, "
                                              "data, layers and pooling from it (the exact cache that run looks up)."),
        on_augment: str = typer.Option("crop", "--on-augment", help="With --config and random crops: 'crop' stores "
                                       "grids (crop applied to the cached grid), 'teacher' pooled targets."),
        dtype: str = typer.Option("fp16", "--dtype", help="Storage dtype: fp16, bf16 or fp32."),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache root (default: $ROCKET_CACHE_DIR "
                                                 "or ~/.cache/rocket/teacher-features)."),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Samples per teacher call."),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N dataset rows."),
        progress: bool = typer.Option(True, "--progress/--no-progress"),
    ) -> None:
        """Print the projected size, refuse if it does not fit on disk, then fill the cache (resumable)."""
        import torch

        from rocket_core.data import DataSpec, VLADataset
        from rocket_core.registry import get_registry
        from rocket_core.specs import TeacherSpec
        from rocket_core.train.cache import (
            HEADER_BYTES,
            Pooling,
            TeacherCache,
            check_disk,
            default_cache_dir,
            format_bytes,
        )

        root = check_output_dir(cache_dir or default_cache_dir(), "--cache-dir")
        if on_augment not in ("crop", "teacher"):
            raise RocketError(f"--on-augment must be 'crop' or 'teacher', got '{on_augment}'")
        if config is not None:
            from rocket_core.engine import plan_run
            from rocket_core.specs import build_spec
            from rocket_core.train.trainer import data_spec_for

            plan = plan_run(build_spec(config, base=DEFAULT_PLUGINS))
            dataset = VLADataset(data_spec_for(plan), seed=plan.spec.training.seed)
            cache = TeacherCache.for_run(plan, dataset, root, dtype, on_augment)  # type: ignore[arg-type]  # a checked CLI choice
            adapter, spec = plan.teacher, plan.spec.teacher
        else:
            if layers is None:
                raise RocketError("pass --layers (teacher layers to store, e.g. 4,11,17,23) or --config")
            adapter = get_registry().get("teacher", teacher)
            spec = TeacherSpec(name=teacher, checkpoint=checkpoint, revision=revision, preset=preset)
            info = adapter.info(spec)
            resolved = [adapter.resolve_layer(info, i) for i in _layers(layers)]
            dataset = VLADataset(DataSpec(dataset=data), seed=0, train=False)
            pooling = None
            if tokens:
                pooling = Pooling(tokens, tuple(info.patch_grid), tuple(info.image_size),
                                  "bilinear", teacher_pe)
            pad = max(0, (vla_cameras or len(dataset.slots)) - len(dataset.slots))
            cache = TeacherCache.create(root, dataset, spec, adapter, resolved, "pooled" if tokens else "grid", dtype,
                                        pooling, pad_frames=pad)

        rows = list(range(len(dataset)))[:limit]
        layout = cache.layout
        per_sample = layout.sample_bytes + HEADER_BYTES
        pending = cache.pending(rows)
        what = (f"pooled targets {list(layout.shape)}" if layout.kind == "pooled" else f"patch grids {list(layout.shape)}")
        console.print(f"cache {cache.store.dir}", highlight=False)
        console.print(f"layers {list(layout.layers)} of teacher '{adapter.name}', {what} {layout.dtype}", highlight=False)
        console.print(f"projected size: {len(rows)} samples x {format_bytes(per_sample)} = "
                      f"{format_bytes(len(rows) * per_sample)} ({len(pending)} to compute, "
                      f"{format_bytes(len(pending) * per_sample)} to write)", highlight=False)
        needed, free = check_disk(root, len(pending) * per_sample, layout.dtype)
        console.print(f"free disk space: {format_bytes(free)}", highlight=False)

        model = adapter.build(spec)
        if torch.cuda.is_available():
            model.to("cuda")  # type: ignore[union-attr]  # an nn.Module; TeacherModel has no .to
        with Bar("cache", len(rows), progress, console=console) as bar:
            stats = cache.build(model, rows, batch_size, lambda n: bar.update(advance=n))
        console.print(f"done: {stats.misses} computed, {stats.hits} already cached, {stats.corrupt} corrupt "
                      f"(recomputed), {format_bytes(stats.written_bytes)} written", highlight=False)

    app.add_typer(group, name="cache")
