"""Projector similarity: L x L token-mean cosine matrices of the projector's inputs, outputs (ensemble
mean) and the pooled targets, and the per-pair output-target cosine."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from rocket_core.align.targets import teacher_features
from rocket_core.analysis import plots
from rocket_core.analysis.results import FILE_STEMS, FORMAT, KIND_STYLE, matrix_doc, pair_labels, write_json
from rocket_core.analysis.samples import Progress, autocast, iter_batches
from rocket_core.analysis.similarity import token_mean_cosine
from rocket_core.contracts import TeacherModel
from rocket_core.data import VLADataset
from rocket_core.engine import AlignPlan
from rocket_core.errors import RocketError
from rocket_core.train.build import AlignModule


def profile_projector_similarity(
    plan: AlignPlan,
    module: AlignModule,
    teacher: TeacherModel,
    dataset: VLADataset,
    indices: Sequence[int],
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Token-mean cosine between the pairs' projector inputs, outputs and targets; output-target cosine."""
    device = torch.device(device)
    head = module.head
    if head is None:
        raise RocketError("this run has no alignment head (coefficient 0): there is no projector to inspect")
    module.to(device).eval()
    layers = plan.layers
    num_pairs = len(layers.vla)
    sums = {k: torch.zeros(num_pairs, num_pairs, dtype=torch.float64) for k in ("inputs", "outputs", "targets")}
    out_target = torch.zeros(num_pairs, dtype=torch.float64)
    seen = 0
    with torch.no_grad():
        for batch in iter_batches(dataset, indices, batch_size, device):
            size = len(batch["task"])
            with autocast(device, plan.spec):
                states = module.vla.forward_align(batch, layers.vla).vision_states
                raw = teacher_features(teacher, batch, layers.teacher, plan.vla_info.num_images)
                inputs = [states[k] for k in layers.vla]
                outputs = head.project(inputs).float().mean(1)  # (L, B, V, C): ensemble mean
            targets = head.pool_targets([raw[k].float() for k in layers.teacher]).float()  # (L, B, N, C)
            for key, value in (("inputs", torch.stack(inputs).float()), ("outputs", outputs), ("targets", targets)):
                sums[key] += token_mean_cosine(value).double().cpu() * size
            if outputs.shape[2] == targets.shape[2]:
                cos = torch.nn.functional.cosine_similarity(outputs, targets, dim=-1)  # (L, B, V)
                out_target += cos.mean(-1).sum(-1).double().cpu()
            else:
                raise RocketError(f"the projector gives {outputs.shape[2]} tokens but the pooled targets have "
                                  f"{targets.shape[2]}; the run's pooling does not match its VLA")
            seen += size
            if progress is not None:
                progress(size)
    labels = pair_labels(layers)
    per_pair = (out_target / seen).tolist()
    return {
        "kind": "projector-similarity",
        "format": FORMAT,
        **(source or {}),
        "projector": plan.spec.projector.name,
        "pairs": [{"pair": i, "vla": v, "teacher": t} for i, (v, t) in enumerate(layers.pairs)],
        "samples": seen,
        "sample_indices": list(indices),
        "batch_size": batch_size,
        "data": plan.spec.data.dataset or "bundled",
        "output_target_cosine": [{"pair": i, "vla": v, "teacher": t, "cosine": c}
                                 for i, ((v, t), c) in enumerate(zip(layers.pairs, per_pair))],
        "primary": "outputs",
        "matrices": {k: matrix_doc(v / seen, labels, labels, "pair", "pair") for k, v in sums.items()},
    }


def save_projector_similarity(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """projector_similarity.json and its panels (inputs, outputs, targets, output-target bars)."""
    out, stem = Path(out_dir), FILE_STEMS["projector-similarity"]
    pairs = doc["output_target_cosine"]
    figure = plots.panels(
        out / f"{stem}.png",
        [(doc["matrices"][k], f"{k}: token-mean cosine") for k in ("inputs", "outputs", "targets")],
        *KIND_STYLE["projector-similarity"],
        bars=([f"v{p['vla']}-t{p['teacher']}" for p in pairs], [p["cosine"] for p in pairs],
              "output vs target cosine per pair"),
        title=f"projector similarity ({doc['projector']} projector; {doc['samples']} samples; "
              f"{doc.get('checkpoint') or 'fresh model'})",
    )
    doc = {**doc, "files": {"figure": str(figure)}}
    return {"json": write_json(out / f"{stem}.json", doc), "figure": figure}
