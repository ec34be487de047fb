"""Linear CKA between layers and Hungarian one-to-one layer matching (training-free pair selection)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def centred_gram(x: torch.Tensor) -> torch.Tensor:
    """Double-centred linear Gram matrix of n samples, in float64 so degenerate inputs centre to exactly 0."""
    x = x.reshape(x.shape[0], -1).double()
    gram = x @ x.T
    return gram - gram.mean(0, keepdim=True) - gram.mean(1, keepdim=True) + gram.mean()


def cka_from_grams(kc: torch.Tensor, lc: torch.Tensor) -> float:
    """<Kc, Lc>_F / (|Kc|_F |Lc|_F); 0 when either side has no variance (the reference's value is ~1e-9)."""
    denom = kc.norm() * lc.norm()
    if denom == 0:
        return 0.0
    return float((kc * lc).sum() / denom)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two (n, ...) feature sets on the same n samples."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same samples on both sides ({x.shape[0]} vs {y.shape[0]})")
    return cka_from_grams(centred_gram(x), centred_gram(y))


def cka_matrix(rows: Mapping[int, torch.Tensor], cols: Mapping[int, torch.Tensor]) -> np.ndarray:
    """CKA of every (row layer, column layer), both sorted by index; each Gram is computed once."""
    row_grams = [centred_gram(rows[k]) for k in sorted(rows)]
    col_grams = [centred_gram(cols[k]) for k in sorted(cols)]
    return np.array([[cka_from_grams(r, c) for c in col_grams] for r in row_grams])


@dataclass(frozen=True)
class LayerMatch:
    pairs: list[tuple[int, int, float]]  # (row layer, column layer, similarity), sorted by row layer
    average_similarity: float
    best_column_per_row: dict[int, int]


def hungarian_match(similarity: np.ndarray, row_layers: list[int], col_layers: list[int]) -> LayerMatch:
    """One-to-one assignment maximising similarity (`linear_sum_assignment(max(S) - S)`)."""
    sim = np.asarray(similarity, dtype=np.float64)
    rows, cols = linear_sum_assignment(sim.max() - sim)
    pairs = sorted((row_layers[r], col_layers[c], float(sim[r, c])) for r, c in zip(rows, cols))
    best = {row_layers[r]: col_layers[int(np.argmax(sim[r]))] for r in range(sim.shape[0])}
    return LayerMatch(pairs, float(np.mean([p[2] for p in pairs])), best)
