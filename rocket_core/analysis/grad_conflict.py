"""Gradient conflict: per pair, the gradient of its alignment loss on monitored trainable parameters
(by default the VLA plugin's choice, e.g. LoRA matrices of LLM block 0); the L x L cosine matrix averaged
over batches.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rocket_core.align.targets import teacher_features
from rocket_core.analysis import plots
from rocket_core.analysis.results import FILE_STEMS, FORMAT, KIND_STYLE, matrix_doc, pair_labels, write_json
from rocket_core.analysis.samples import Progress, autocast, iter_batches
from rocket_core.analysis.similarity import gradient_conflict
from rocket_core.contracts import TeacherModel
from rocket_core.data import VLADataset
from rocket_core.engine import AlignPlan
from rocket_core.errors import RocketError
from rocket_core.train.build import AlignModule


def monitored_parameters(module: AlignModule, patterns: Sequence[str], lora_only: bool = True
                         ) -> list[tuple[str, torch.nn.Parameter]]:
    """Trainable parameters whose name contains any of `patterns` (and `lora_` when `lora_only`)."""
    trainable = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    chosen = [(n, p) for n, p in trainable
              if any(s in n for s in patterns) and (not lora_only or "lora_" in n)]
    if not chosen:
        sample = ", ".join(n for n, _ in trainable[:4])
        what = "LoRA parameter" if lora_only else "trainable parameter"
        raise RocketError(f"no {what} name contains any of {list(patterns)}; pick --params from the trainable "
                          f"names (e.g. {sample})" + ("; --all-params also takes non-LoRA ones" if lora_only else ""))
    return chosen


def profile_grad_conflict(
    plan: AlignPlan,
    module: AlignModule,
    teacher: TeacherModel,
    dataset: VLADataset,
    indices: Sequence[int],
    patterns: Sequence[str] = ("layers.0.",),
    lora_only: bool = True,
    batch_size: int | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cosine between the pairs' alignment-loss gradients on the monitored parameters, averaged over batches.

    Each pair's loss is averaged over the ensemble and the batch (`AlignOutput.pair_losses`); each gradient
    is divided by (norm + 1e-8). The action loss is not included (reference `profiling_gradient_filtering`).
    Works for every projector strategy. A pair whose gradient on the monitored parameters is zero (e.g. a
    VLA layer below them) gets a zero row and diagonal.
    """
    device = torch.device(device)
    if module.head is None:
        raise RocketError("this run has no alignment head (coefficient 0): there are no pair losses to compare")
    batch_size = batch_size or plan.spec.training.batch_size
    module.to(device).eval()
    chosen = monitored_parameters(module, patterns, lora_only)
    names, params = [n for n, _ in chosen], [p for _, p in chosen]
    keep = {id(p) for p in params}
    saved = {n: p.requires_grad for n, p in module.named_parameters()}
    for p in module.parameters():
        p.requires_grad_(id(p) in keep)  # the graph only needs paths to the monitored parameters
    layers = plan.layers
    num_pairs = len(layers.vla)
    cos_sum = torch.zeros(num_pairs, num_pairs, dtype=torch.float64)
    norm_sum = torch.zeros(num_pairs, dtype=torch.float64)
    batches = 0
    try:
        for batch in iter_batches(dataset, indices, batch_size, device):
            with torch.no_grad():
                raw = teacher_features(teacher, batch, layers.teacher, plan.vla_info.num_images)
                targets = module.head.pool_targets([raw[k] for k in layers.teacher])
            with autocast(device, plan.spec):
                _, pair_losses = module(batch, targets)
            if not pair_losses.requires_grad:
                raise RocketError(f"no pair's alignment loss depends on the monitored parameters {list(patterns)} "
                                  "(are they below every aligned layer?); choose other --params")
            rows = []
            for i in range(num_pairs):
                grads = torch.autograd.grad(pair_losses[i], params, retain_graph=i < num_pairs - 1, allow_unused=True)
                rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                       for g, p in zip(grads, params)]))
            flat = torch.stack(rows)
            cos_sum += gradient_conflict(flat).double().cpu()
            norm_sum += flat.norm(dim=1).double().cpu()
            batches += 1
            if progress is not None:
                progress(len(batch["task"]))
    finally:
        for n, p in module.named_parameters():
            p.requires_grad_(saved[n])
    cosine = (cos_sum / batches).numpy()
    off = cosine[~np.eye(num_pairs, dtype=bool)]
    labels = pair_labels(layers)
    return {
        "kind": "grad-conflict",
        "format": FORMAT,
        **(source or {}),
        "projector": plan.spec.projector.name,
        "pairs": [{"pair": i, "vla": v, "teacher": t} for i, (v, t) in enumerate(layers.pairs)],
        "params": {"patterns": list(patterns), "lora_only": lora_only, "tensors": len(names),
                   "numel": int(sum(p.numel() for p in params)), "names": names},
        "samples": len(indices),
        "sample_indices": list(indices),
        "batch_size": batch_size,
        "batches": batches,
        "data": plan.spec.data.dataset or "bundled",
        "grad_norm_mean": [float(x) for x in norm_sum / batches],
        "summary": {"mean_off_diagonal": float(off.mean()) if off.size else None,
                    "min_off_diagonal": float(off.min()) if off.size else None},
        "primary": "cosine",
        "matrices": {"cosine": matrix_doc(cosine, labels, labels, "pair", "pair")},
    }


def save_grad_conflict(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """grad_conflict.json and its heatmap."""
    out, stem = Path(out_dir), FILE_STEMS["grad-conflict"]
    mean = doc["summary"]["mean_off_diagonal"]
    figure = plots.heatmap(
        out / f"{stem}.png", doc["matrices"]["cosine"],
        f"gradient cosine between pair losses ({doc['projector']} projector; {doc['samples']} samples)",
        *KIND_STYLE["grad-conflict"],
        note=f"{doc.get('checkpoint') or 'fresh model'}; params {doc['params']['patterns']} "
             f"({doc['params']['numel']:,} values); "
             + (f"mean off-diagonal {mean:.3f}" if mean is not None else "one pair"),
    )
    doc = {**doc, "files": {"figure": str(figure)}}
    return {"json": write_json(out / f"{stem}.json", doc), "figure": figure}
