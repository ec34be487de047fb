"""The alignment head: pool every selected teacher layer, then project every pair and take its loss.

Teacher layers are pooled one by one into one preallocated (L, B, N, C) output (the sin-cos embedding is
pooled once and cached), never stacked raw. Projection and loss of all pairs and ensemble members are
one fused autograd node (rocket_core/align/fused.py): predictions are never stacked, each pair's weight
gradient goes into its prefix slice in place, and peak memory stays below the per-pair autograd loop's
(benchmarks/align_head.py measures time and memory against that loop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rocket_core.align.fused import fused_ensemble_losses
from rocket_core.align.pooling import bilinear_pool, pooled_grid, random_indices, take_tokens
from rocket_core.align.projector import ProjectorBank


@dataclass
class AlignOutput:
    loss: torch.Tensor
    pair_losses: torch.Tensor
    ensemble_losses: torch.Tensor


class AlignmentHead(nn.Module):
    """Projector bank + pooling + loss for L (VLA layer, teacher layer) pairs."""

    def __init__(
        self,
        projector: ProjectorBank,
        num_vision_tokens: int,
        teacher_grid: tuple[int, int],
        teacher_image_hw: tuple[int, int],
        pooling: str = "bilinear",
        teacher_pe: bool = True,
        cosine_eps: float | None = None,
    ) -> None:
        super().__init__()
        self.projector = projector
        self.num_vision_tokens = num_vision_tokens
        self.teacher_grid = (teacher_grid[0], teacher_grid[1])  # tuples even when given lists (JSON)
        self.teacher_image_hw = (teacher_image_hw[0], teacher_image_hw[1])
        self.pooling = pooling
        self.teacher_pe = teacher_pe
        self.cosine_eps = cosine_eps
        self.generator: torch.Generator | None = None  # random pooling's own stream (checkpointed by the trainer)

    def pool_targets(self, teacher_layers: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """L tensors (B, S, P, C) (or one (L, B, S, P, C)) -> (L, B, N, C) targets, pooled layer by layer
        into one output (random pooling draws one token set for all layers)."""
        first = teacher_layers[0]
        batch, frames, patches, dim = first.shape
        if self.pooling == "bilinear":
            oh, ow = pooled_grid(frames, self.teacher_grid, self.num_vision_tokens)
            tokens = frames * oh * ow
        else:
            tokens = self.num_vision_tokens
            idx = random_indices(frames * patches, tokens, self.generator).to(first.device)
        out = first.new_empty(len(teacher_layers), batch, tokens, dim)
        for layer, dst in zip(teacher_layers, out):
            if self.pooling == "bilinear":
                bilinear_pool(layer, self.teacher_grid, self.num_vision_tokens, self.teacher_image_hw,
                              self.teacher_pe, out=dst)
            else:
                take_tokens(layer, idx, out=dst)
        return out

    def project(self, vision_states: Sequence[torch.Tensor]) -> torch.Tensor:
        """(L, E, B, V, C) predictions, stacked: for analysis (profile); training never materialises them."""
        return torch.stack([
            torch.stack([proj(x, self.projector.layer_index(pair)) for proj in self.projector.pool(pair)])
            for pair, x in enumerate(vision_states)
        ])

    def forward(
        self,
        vision_states: Sequence[torch.Tensor],
        teacher_layers: Sequence[torch.Tensor] | torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        targets: Sequence[torch.Tensor] | torch.Tensor | None = None,
    ) -> AlignOutput:
        """Loss averaged over the ensemble, then the pairs. Pass raw `teacher_layers` or pooled `targets`."""
        if targets is None:
            if teacher_layers is None:
                raise ValueError("pass teacher_layers or pooled targets")
            targets = self.pool_targets(teacher_layers)
        ensemble_losses = fused_ensemble_losses(self.projector, vision_states, targets, token_mask, self.cosine_eps)
        pair_losses = ensemble_losses.mean(1)
        return AlignOutput(pair_losses.mean(), pair_losses, ensemble_losses)
