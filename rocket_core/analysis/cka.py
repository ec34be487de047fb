"""Layer CKA: linear CKA between every VLA hidden-state index and every teacher layer, and the layer map.

Teacher tokens are bilinearly pooled to the VLA's vision-token count (PE off); Hungarian one-to-one
matching gives the layer map, plus the best teacher layer per VLA row. Exact when the features fit a
memory budget, a streamed CountSketch otherwise (rocket_core.analysis.sketch). Layer indices are ours (the
VLA's hidden-state indices, the teacher's layer indices); the reference script's -1 offset is not copied.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from rocket_core.align.pooling import bilinear_pool
from rocket_core.align.targets import teacher_features
from rocket_core.analysis import plots
from rocket_core.analysis.results import FORMAT, KIND_STYLE, matrix_doc, model_doc, write_json
from rocket_core.analysis.samples import Progress, autocast, iter_batches
from rocket_core.analysis.sketch import Method, StreamedCKA
from rocket_core.contracts import TeacherAdapter, TeacherModel, VLAAdapter, VLAModel
from rocket_core.data import VLADataset
from rocket_core.engine import AlignPlan
from rocket_core.select.cka import hungarian_match
from rocket_core.select.layermap import parse_layer_sets, write_layer_map
from rocket_core.specs import LayerMap


def parse_cka_layers(value: str, vla: type[VLAAdapter], vinfo: Any, teacher: type[TeacherAdapter],
                     tinfo: Any) -> tuple[list[int], list[int]]:
    """`--layers` of `rocket profile cka` (`layermap.parse_layer_sets`), resolved by the two adapters."""
    return parse_layer_sets(value, (vinfo.max_layer_index, lambda i: vla.resolve_layer(vinfo, i)),
                            (tinfo.num_layers - 1, lambda i: teacher.resolve_layer(tinfo, i)))


def profile_cka(
    plan: AlignPlan,
    vla: VLAModel,
    teacher: TeacherModel,
    dataset: VLADataset,
    indices: Sequence[int],
    vla_layers: Sequence[int],
    teacher_layers: Sequence[int],
    batch_size: int = 8,
    method: Method = "auto",
    sketch_dim: int = 8192,
    memory_budget: float = 4e9,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """CKA of every (VLA hidden state, teacher layer) on the same samples; see the module docstring."""
    device = torch.device(device)
    vinfo, tinfo = plan.vla_info, plan.teacher_info
    vla_layers, teacher_layers = sorted(vla_layers), sorted(teacher_layers)
    acc = StreamedCKA(len(indices), method, sketch_dim, memory_budget, seed)
    shapes: dict[str, list[int]] = {}
    vla.eval()  # type: ignore[attr-defined]  # an nn.Module; VLAModel has no .eval
    with torch.no_grad():
        for batch in iter_batches(dataset, indices, batch_size, device):
            with autocast(device, plan.spec):
                states = vla.forward_align(batch, vla_layers).vision_states
                raw = teacher_features(teacher, batch, teacher_layers, vinfo.num_images)
            feats: dict[tuple[str, int], torch.Tensor] = {("vla", k): states[k] for k in vla_layers}
            for k in teacher_layers:
                feats[("teacher", k)] = bilinear_pool(raw[k].float(), tinfo.patch_grid, vinfo.num_vision_tokens,
                                                      tinfo.image_size, add_pe=False)
            if not shapes:
                shapes = {"vla": list(feats[("vla", vla_layers[0])].shape[1:]),
                          "teacher": list(feats[("teacher", teacher_layers[0])].shape[1:])}
            acc.add(feats)
            if progress is not None:
                progress(len(batch["task"]))
    grams = acc.finish()
    rows = [("vla", k) for k in vla_layers]
    cols = [("teacher", k) for k in teacher_layers]
    cross = grams.cka(rows, cols)
    match = hungarian_match(cross, vla_layers, teacher_layers)
    return {
        "kind": "cka",
        "format": FORMAT,
        **(source or {}),
        "method": grams.method,
        "sketch": {"type": "countsketch", "dim": grams.sketch_dim, "seed": seed} if grams.method == "sketch" else None,
        "memory_budget_bytes": memory_budget,
        "exact_bytes": StreamedCKA.exact_bytes(len(indices), grams.features),
        "samples": len(indices),
        "sample_seed": seed,
        "sample_indices": list(indices),
        "data": plan.spec.data.dataset or "bundled",
        "vla": {**model_doc(plan.spec.vla), "layers": vla_layers, "tokens_x_width": shapes["vla"],
                "num_vision_tokens": vinfo.num_vision_tokens},
        "teacher": {**model_doc(plan.spec.teacher), "layers": teacher_layers, "pooled_tokens_x_width": shapes["teacher"],
                    "pooling": "bilinear", "teacher_pe": False},
        "primary": "cka",
        "matrices": {
            "cka": matrix_doc(cross, vla_layers, teacher_layers, "VLA hidden state", "teacher layer"),
            "vla_vla": matrix_doc(grams.cka(rows, rows), vla_layers, vla_layers, "VLA hidden state",
                                  "VLA hidden state"),
            "teacher_teacher": matrix_doc(grams.cka(cols, cols), teacher_layers, teacher_layers, "teacher layer",
                                          "teacher layer"),
        },
        "matching": {
            "pairs": [{"vla": v, "teacher": t, "cka": s} for v, t, s in match.pairs],
            "average_cka": match.average_similarity,
            "best_teacher_per_vla": {str(v): t for v, t in match.best_column_per_row.items()},
        },
    }


def cka_layer_map(doc: dict[str, Any]) -> LayerMap:
    """The Hungarian pairs as a layer map (VLA layers ascending), for `rocket align --layers FILE`."""
    pairs = sorted((p["vla"], p["teacher"]) for p in doc["matching"]["pairs"])
    return LayerMap(vla=[v for v, _ in pairs], teacher=[t for _, t in pairs])


def save_cka(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write cka.json, cka.png (matched pairs outlined, best teacher per row dotted) and layers.yaml."""
    out = Path(out_dir)
    layer_map = write_layer_map(out / "layers.yaml", cka_layer_map(doc), meta={
        "source": "rocket profile cka",
        "vla": doc["vla"]["name"],
        "teacher": doc["teacher"]["name"],
        "cka": [round(p["cka"], 6) for p in sorted(doc["matching"]["pairs"], key=lambda p: p["vla"])],
        "average_cka": round(doc["matching"]["average_cka"], 6),
        "samples": doc["samples"],
        "method": doc["method"],
    })
    pairs = [(p["vla"], p["teacher"]) for p in doc["matching"]["pairs"]]
    best = [(int(v), t) for v, t in doc["matching"]["best_teacher_per_vla"].items()]
    method = doc["method"] + (f" (CountSketch d={doc['sketch']['dim']})" if doc["sketch"] else "")
    figure = plots.heatmap(
        out / "cka.png", doc["matrices"]["cka"],
        f"linear CKA: {doc['vla']['name']} vs {doc['teacher']['name']} ({doc['samples']} samples, {method})",
        *KIND_STYLE["cka"], pairs=pairs, best=best,
        note=f"squares: one-to-one matching (mean {doc['matching']['average_cka']:.3f}); dots: best teacher layer per row",
    )
    doc = {**doc, "files": {"figure": str(figure), "layer_map": str(layer_map)}}
    return {"json": write_json(out / "cka.json", doc), "figure": figure, "layer_map": layer_map}
