"""`rocket select-layers`: the training-free balanced rule, written as a layer-map file."""
from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.table import Table

from rocket_cli.common import console, handle_errors
from rocket_core.errors import RocketError
from rocket_core.paths import check_output_file
from rocket_core.registry import get_registry
from rocket_core.select.layermap import balanced_map, write_layer_map
from rocket_core.specs import TeacherSpec, VLASpec


def register(app: typer.Typer) -> None:
    @app.command("select-layers")
    @handle_errors
    def select_layers(
        k: int = typer.Option(10, "-k", "--pairs", min=1, help="Number of (VLA, teacher) pairs."),
        vla_layers: int = typer.Option(None, help="VLA transformer blocks (or take it from --vla)."),
        teacher_layers: int = typer.Option(None, help="Teacher layers (or take it from --teacher)."),
        vla_offset: int = typer.Option(
            None, help="Hidden-state index of block 0's output (default 1: hidden state 0 is the embeddings)."
        ),
        vla: str = typer.Option(None, help="VLA plugin: block count and offset come from it."),
        teacher: str = typer.Option(None, help="Teacher plugin: layer count comes from it."),
        preset: str = typer.Option(None, help="Preset passed to both plugins (e.g. tiny)."),
        output: Path = typer.Option(None, "-o", "--output", help="Write the layer map here (YAML)."),
    ) -> None:
        """Pick K evenly spread pairs with the reference's balanced rule."""
        if output is not None:
            check_output_file(output, "-o")
        offset = 1
        if vla is not None:
            cls = get_registry().get("vla", vla)
            info = cls.info(VLASpec(name=vla, preset=preset))
            vla_layers = vla_layers or info.num_blocks
            offset = info.layer_offset
        if teacher is not None:
            tcls = get_registry().get("teacher", teacher)
            teacher_layers = teacher_layers or tcls.info(TeacherSpec(name=teacher, preset=preset)).num_layers
        if vla_layers is None or teacher_layers is None:
            raise RocketError("give --vla-layers and --teacher-layers (or --vla and --teacher plugin names)")
        if vla_layers < 1 or teacher_layers < 1:
            raise RocketError("--vla-layers and --teacher-layers must be at least 1")
        if vla_offset is not None and vla_offset < 0:
            raise RocketError(f"--vla-offset must be 0 or more (hidden state 0 is the embeddings), got {vla_offset}")
        offset = offset if vla_offset is None else vla_offset
        layer_map = balanced_map(k, vla_layers, teacher_layers, offset)
        meta = {"rule": f"balanced:{k}", "vla_blocks": vla_layers, "teacher_layers": teacher_layers,
                "vla_offset": offset}
        table = Table(title=f"balanced layer map ({len(layer_map.vla)} pairs)")
        for col in ("pair", "VLA hidden state", "teacher layer"):
            table.add_column(col, justify="right")
        for i, (v, t) in enumerate(layer_map.pairs):
            table.add_row(str(i), str(v), str(t))
        console.print(table)
        if output is None:
            typer.echo(yaml.safe_dump({"vla": layer_map.vla, "teacher": layer_map.teacher}, sort_keys=False))
        else:
            write_layer_map(output, layer_map, meta)
            console.print(f"wrote {output}")
