"""The alignment head: pool every selected teacher layer, project every pair, one cosine loss.

Per step it pools all selected teacher layers in a single interpolate call (the sin-cos embedding is
cached), projects each pair through its (prefix of the) projector, and computes the loss of every
pair and ensemble member in one batched cosine. Projection stays a per-pair loop on purpose: pairs have
different inputs and prefix widths, so a masked full-width batch would spend more FLOPs than it saves
(see benchmarks/align_head.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rocket_core.align.loss import cosine_loss
from rocket_core.align.pooling import bilinear_pool, random_pool
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
        self.teacher_grid = tuple(teacher_grid)
        self.teacher_image_hw = tuple(teacher_image_hw)
        self.pooling = pooling
        self.teacher_pe = teacher_pe
        self.cosine_eps = cosine_eps
        self.generator: torch.Generator | None = None  # random pooling's own stream (checkpointed by the trainer)

    def pool_targets(self, teacher_layers: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        """L tensors (B, S, P, C) (or one (L, B, S, P, C)) -> (L, B, N, C) targets, in one pooling call."""
        stacked = teacher_layers if isinstance(teacher_layers, torch.Tensor) else torch.stack(list(teacher_layers))
        num_layers, batch = stacked.shape[:2]
        flat = stacked.reshape(num_layers * batch, *stacked.shape[2:])
        if self.pooling == "bilinear":
            pooled = bilinear_pool(
                flat, self.teacher_grid, self.num_vision_tokens, self.teacher_image_hw, self.teacher_pe
            )
        else:
            pooled = random_pool(flat, self.num_vision_tokens, self.generator)
        return pooled.reshape(num_layers, batch, *pooled.shape[1:])

    def project(self, vision_states: Sequence[torch.Tensor]) -> torch.Tensor:
        """(L, E, B, V, C): pair i through its pool with its layer index."""
        outs = []
        for pair, x in enumerate(vision_states):
            layer_index = self.projector.layer_index(pair)
            outs.append(torch.stack([proj(x, layer_index) for proj in self.projector.pool(pair)]))
        return torch.stack(outs)

    def forward(
        self,
        vision_states: Sequence[torch.Tensor],
        teacher_layers: Sequence[torch.Tensor] | torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> AlignOutput:
        """Loss averaged over the ensemble, then the pairs. Pass raw `teacher_layers` or pooled `targets`."""
        if targets is None:
            if teacher_layers is None:
                raise ValueError("pass teacher_layers or pooled targets")
            targets = self.pool_targets(teacher_layers)
        preds = self.project(vision_states)
        mask = None if token_mask is None else token_mask[None, None]
        ensemble_losses = cosine_loss(preds, targets[:, None].to(preds.dtype), mask, self.cosine_eps)
        pair_losses = ensemble_losses.mean(1)
        return AlignOutput(pair_losses.mean(), pair_losses, ensemble_losses)
