"""The alignment head: pool every selected teacher layer, then project every pair and take its loss.

Teacher layers are pooled one by one into one preallocated (L, B, N, C) output (the sin-cos embedding is
pooled once and cached), never stacked raw. For the built-in projector, projection and loss of all pairs
and ensemble members are fused autograd nodes (rocket_core/align/fused.py): predictions are never
stacked, each pair's weight gradient goes into its prefix slice in place, and peak memory stays below the
per-pair autograd loop's (benchmarks/align_head.py measures time and memory against that loop). The
fused nodes bypass the projector's methods, so any other projector (a plugin's subclass, a hook, a
patched method; `fused.fusable` decides) takes that loop instead: plain autograd through
`proj(x, bank.layer_index(pair))`, the same loss and the same Matryoshka prefixes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from rocket_core.align.fused import fusable, fused_ensemble_losses
from rocket_core.align.layout import pooled_grid
from rocket_core.align.loss import cosine_loss
from rocket_core.align.pooling import bilinear_pool, random_indices, take_tokens
from rocket_core.align.projector import ProjectorBank


def autograd_ensemble_losses(
    bank: ProjectorBank,
    states: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor] | torch.Tensor,
    mask: torch.Tensor | None,
    cosine_eps: float | None,
) -> torch.Tensor:
    """(L, E) losses through each projector's own forward and plain autograd: what the fused nodes compute,
    for projectors they cannot read (targets and mask are constants; cosines in at least float32, as there)."""
    mask = None if mask is None else mask.detach()
    losses = []
    for pair, x in enumerate(states):
        for proj in bank.pool(pair):
            pred = proj(x, bank.layer_index(pair))
            acc = torch.promote_types(pred.dtype, torch.float32)
            losses.append(cosine_loss(pred.to(acc), targets[pair].detach().to(acc), mask, cosine_eps))
    return torch.stack(losses).view(len(states), bank.ensemble_size)


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

    @property
    def fused_path(self) -> bool:
        """Whether forward takes the fused nodes (the built-in projector) or plain autograd (any other)."""
        return fusable(self.projector)

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
        for pair, (x, target) in enumerate(zip(vision_states, targets)):
            if tuple(target.shape[:2]) != tuple(x.shape[:2]):
                raise ValueError(f"pair {pair}: {tuple(target.shape[:2])} target tokens for {tuple(x.shape[:2])} "
                                 "vision tokens; the pooled grid does not match the VLA's vision tokens")
        losses = fused_ensemble_losses if self.fused_path else autograd_ensemble_losses
        ensemble_losses = losses(self.projector, vision_states, targets, token_mask, self.cosine_eps)
        pair_losses = ensemble_losses.mean(1)
        return AlignOutput(pair_losses.mean(), pair_losses, ensemble_losses)
