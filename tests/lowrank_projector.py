"""A third-party-style projector strategy: AlignProjector whose `normed` is LayerNorm then a rank-16
down-projection (issue 20's report). The fused head cannot read it; it must train through plain autograd.

Registered in tests with `Registry.register_module(tests.lowrank_projector)`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rocket_core import hookimpl
from rocket_core.align.projector import AlignProjector, ProjectorBank, matryoshka_widths
from rocket_core.contracts import ProjectorStrategy
from rocket_core.specs import ProjectorSpec

RANK = 16


class LowRankProjector(AlignProjector):
    """LayerNorm(in_dim) -> Linear(in_dim, RANK) -> the AlignProjector MLP on RANK-wide inputs."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, widths: Sequence[int]) -> None:
        super().__init__(RANK, out_dim, hidden_dim, widths, use_norm=False)
        self.norm = nn.LayerNorm(in_dim)
        self.down = nn.Linear(in_dim, RANK, bias=False)

    def normed(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.norm(x))


class LowRankStrategy(ProjectorStrategy):
    name = "lowrank"
    description = "Shared Matryoshka projector behind a rank-16 down-projection (test plugin)"
    version = "1.0"

    @classmethod
    def build(cls, num_pairs: int, in_dim: int, out_dim: int, spec: ProjectorSpec, ensemble_size: int) -> ProjectorBank:
        hidden = spec.hidden_dim or out_dim
        widths = matryoshka_widths(hidden, num_pairs, spec.width_ratios)[1]
        pool = [LowRankProjector(in_dim, out_dim, hidden, widths) for _ in range(ensemble_size)]
        return ProjectorBank([pool], num_pairs, shared=True)


@hookimpl
def register_projectors(register) -> None:  # type: ignore[no-untyped-def]
    register(LowRankStrategy)
