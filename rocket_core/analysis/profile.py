"""`rocket profile`: the paper's three analyses as functions that return JSON-ready results.

Where each part lives:
- `analysis/samples.py`: device, seeded unaugmented samples, batches (what every analysis reads);
- `analysis/cka.py`: layer CKA, Hungarian matching and the layer map it writes;
- `analysis/grad_conflict.py`: cosine between the pairs' alignment-loss gradients;
- `analysis/projector_similarity.py`: cosine of the projector's inputs, outputs and targets;
- `analysis/results.py`: the result documents (JSON), reading them back and comparing two;
- `train/build.py`: the models, exactly as `rocket align` builds them (fresh, or from a checkpoint).
This module is the one `rocket profile` imports: those parts' public names, and the per-kind save.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from rocket_core.analysis.cka import parse_cka_layers, profile_cka, save_cka
from rocket_core.analysis.grad_conflict import profile_grad_conflict, save_grad_conflict
from rocket_core.analysis.projector_similarity import profile_projector_similarity, save_projector_similarity
from rocket_core.analysis.results import compare_results, matrix_doc, read_result, save_compare
from rocket_core.analysis.samples import analysis_dataset, feature_plan, resolve_device, sample_indices
from rocket_core.contracts import TeacherModel
from rocket_core.engine import AlignPlan
from rocket_core.train.build import AlignModule, build_module, build_teacher, load_trained

__all__ = [  # what `rocket profile` and the tests use
    "analysis_dataset", "build_models", "compare_results", "feature_plan", "load_trained", "matrix_doc",
    "parse_cka_layers", "profile_cka", "profile_grad_conflict", "profile_projector_similarity", "read_result",
    "resolve_device", "sample_indices", "save_cka", "save_compare", "save_result",
]
_SAVERS = {"cka": save_cka, "grad-conflict": save_grad_conflict, "projector-similarity": save_projector_similarity}


def build_models(plan: AlignPlan) -> tuple[AlignModule, TeacherModel]:
    """A fresh `AlignModule`, then the teacher, in `rocket align`'s order: with the same seed, tiny presets
    get exactly the VLA, head and teacher weights the run started from."""
    module = build_module(plan)
    return module, build_teacher(plan)


def save_result(doc: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """JSON + PNG (+ layers.yaml for CKA) of a result, by its kind."""
    return _SAVERS[doc["kind"]](doc, out_dir)
