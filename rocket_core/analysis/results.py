"""Profile result documents: matrices as JSON, reading them back, and comparing two of one kind.

A result is a dict with `kind`, `format`, `matrices` (name -> {rows, cols, row_label, col_label, values})
and `primary` (the matrix `rocket profile compare` shows), plus kind-specific fields.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from rocket_core.analysis import plots
from rocket_core.errors import RocketError
from rocket_core.specs import LayerMap

FORMAT = 1
# colour range and map per kind: CKA lies in [0, 1], gradient cosines in [-1, 1]
KIND_STYLE: dict[str, tuple[tuple[float, float] | None, str]] = {
    "cka": ((0.0, 1.0), "viridis"),
    "grad-conflict": ((-1.0, 1.0), "RdBu_r"),
    "projector-similarity": (None, "viridis"),
}
FILE_STEMS = {"cka": "cka", "grad-conflict": "grad_conflict", "projector-similarity": "projector_similarity"}

def matrix_doc(values: np.ndarray | torch.Tensor, rows: Sequence[Any], cols: Sequence[Any], row_label: str,
               col_label: str) -> dict[str, Any]:
    arr = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    return {"rows": list(rows), "cols": list(cols), "row_label": row_label, "col_label": col_label,
            "values": [[float(v) for v in row] for row in arr]}


def pair_labels(layers: LayerMap) -> list[str]:
    return [f"v{v}-t{t}" for v, t in layers.pairs]


def model_doc(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "preset": spec.preset, "checkpoint": spec.checkpoint, "revision": spec.revision}


def write_json(path: str | Path, doc: dict[str, Any]) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(p)
    return p


def read_result(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise RocketError(f"profile result '{p}' does not exist; check the path") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RocketError(f"profile result '{p}' is not readable JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("kind") not in KIND_STYLE or "matrices" not in doc:
        raise RocketError(f"'{p}' is not a `rocket profile` result (no kind/matrices); "
                          "pass the JSON a profile command wrote")
    return doc


def compare_results(a: dict[str, Any], b: dict[str, Any], matrix: str | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The same matrix of two results of one kind, checked to have the same rows and columns."""
    if a["kind"] != b["kind"]:
        raise RocketError(f"cannot compare a {a['kind']} result with a {b['kind']} result; give two of one kind")
    name = matrix or a.get("primary") or next(iter(a["matrices"]))
    for doc in (a, b):
        if name not in doc["matrices"]:
            raise RocketError(f"matrix '{name}' is not in this {doc['kind']} result; "
                              f"choose one of {', '.join(doc['matrices'])}")
    ma, mb = a["matrices"][name], b["matrices"][name]
    if (ma["rows"], ma["cols"]) != (mb["rows"], mb["cols"]):
        raise RocketError(f"the two '{name}' matrices cover different layers (rows {ma['rows']} x cols {ma['cols']} "
                          f"vs {mb['rows']} x {mb['cols']}); profile both with the same layers")
    return ma, mb, name


def save_compare(a: dict[str, Any], b: dict[str, Any], out: str | Path, labels: tuple[str, str],
                 matrix: str | None = None) -> Path:
    ma, mb, name = compare_results(a, b, matrix)
    vrange, cmap = KIND_STYLE[a["kind"]]
    return plots.compare(out, ma, mb, labels, f"{a['kind']}: {name}", vrange, cmap)
