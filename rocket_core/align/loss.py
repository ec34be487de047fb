"""Cosine alignment loss: per sample 1 - mean token cosine, then the batch mean."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def unit(x: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Unit vectors over the last dim: `eps=None` clamps the norm at 1e-12 like `F.normalize` (the PyTorch
    reference); a float divides by `norm + eps` (the JAX reference)."""
    return F.normalize(x, dim=-1) if eps is None else x / (x.norm(dim=-1, keepdim=True) + eps)


def token_cosine(pred: torch.Tensor, target: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Cosine per token over the last dim."""
    return (unit(pred, eps) * unit(target, eps)).sum(-1)


def loss_from_cosine(cos: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of token cosines (..., B, N): leading dims (pairs, ensemble) are kept.

    Masked: each sample averages its valid tokens; a sample with none is left out of the batch mean, and
    if no sample has any the result is 0 with zero gradient (the reference would give NaN).
    """
    if mask is None:
        return (1 - cos.mean(-1)).mean(-1)
    m = mask.to(cos.dtype)
    count = m.sum(-1)
    per_sample = 1 - (cos * m).sum(-1) / count.clamp(min=1)
    valid = (count > 0).to(cos.dtype)
    return (per_sample * valid).sum(-1) / valid.sum(-1).clamp(min=1)


def cosine_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, eps: float | None = None
) -> torch.Tensor:
    """Loss over the last three dims (B, N, C); leading dims (pairs, ensemble) are kept: the generic (autograd)
    path of the alignment head, and what the fused path must equal."""
    return loss_from_cosine(token_cosine(pred, target, eps), mask)


def cosine_weights(
    shape: tuple[int, int], mask: torch.Tensor | None, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(B, N) `w` with `loss_from_cosine(cos, mask) = const - sum(w * cos)`: minus the loss's
    gradient with respect to each token's cosine, which a fused backward needs."""
    batch, tokens = shape
    if mask is None:
        return torch.full(shape, 1.0 / (batch * tokens), device=device, dtype=dtype)
    m = mask.to(device=device, dtype=dtype)
    count = m.sum(-1, keepdim=True)
    valid = (count > 0).to(dtype)
    return m * valid / (count.clamp(min=1) * valid.sum().clamp(min=1))

