"""Gradient-conflict and projector-similarity matrices (reference profiling scripts, as plain functions)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gradient_conflict(layer_grads: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(L, P) flattened per-pair gradients -> (L, L) cosines; each row divided by (norm + eps).

    An all-zero row stays zero instead of NaN, which is why eps is added rather than clamped. Summed in
    float64: over millions of parameters float32 rounding puts the diagonal above 1 (1.000002 seen).
    """
    grads = layer_grads.double()
    unit: torch.Tensor = grads / (grads.norm(dim=1, keepdim=True) + eps)
    return (unit @ unit.T).to(layer_grads.dtype)


def token_mean_cosine(features: torch.Tensor) -> torch.Tensor:
    """(L, ..., N, D) per-layer features -> (L, L): mean over samples and tokens of cos(layer m, layer n)."""
    unit = F.normalize(features, dim=-1)
    num_layers, dim = unit.shape[0], unit.shape[-1]
    flat = unit.reshape(num_layers, -1, dim)
    return torch.einsum("mtd,ntd->mn", flat, flat) / flat.shape[1]
