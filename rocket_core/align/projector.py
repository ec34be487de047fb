"""The alignment projector (LayerNorm?, fc1, GELU, fc2) with Matryoshka prefix widths.

Pair i of a shared projector uses only the first `w_i` hidden units, so shallow pairs train a nested
sub-network of the deep pairs' projector. Names and semantics follow the reference `AlignProjector`
so its state dicts load unchanged.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence, overload

import torch
import torch.nn.functional as F
from torch import nn

from rocket_core.align.layout import bank_widths, matryoshka_widths  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from rocket_core.specs import ProjectorSpec


class AlignProjector(nn.Module):
    """Optional LayerNorm, fc1 (prefix of width w), GELU, fc2; one width per layer index."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int,
        widths: Sequence[int],
        use_norm: bool = True,
        norm_eps: float = 1e-5,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        self.vlm_norm = nn.LayerNorm(in_dim, eps=norm_eps) if use_norm else None
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)
        self.widths = list(widths)
        self.approximate = {"gelu": "none", "gelu_tanh": "tanh"}[activation]
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def width(self, layer_index: int) -> int:
        """`-1` is the last layer index; any index is clamped into range (reference behaviour)."""
        last = len(self.widths) - 1
        idx = last if layer_index == -1 else layer_index
        return self.widths[min(max(idx, 0), last)]

    def normed(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.vlm_norm is None else self.vlm_norm(x)

    def project_normed(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """fc1 prefix -> GELU -> fc2 prefix, on already-normalised input."""
        h = F.gelu(F.linear(x, self.fc1.weight[:width], self.fc1.bias[:width]), approximate=self.approximate)
        return F.linear(h, self.fc2.weight[:, :width], self.fc2.bias)

    def forward(self, x: torch.Tensor, layer_index: int = -1) -> torch.Tensor:
        return self.project_normed(self.normed(x), self.width(layer_index))


if TYPE_CHECKING:

    class _Pool(nn.ModuleList):
        """What type checkers see of a pool: its items are AlignProjectors (torch types them as Module)."""

        def __iter__(self) -> Iterator[AlignProjector]: ...
        @overload
        def __getitem__(self, idx: slice) -> _Pool: ...
        @overload
        def __getitem__(self, idx: int) -> AlignProjector: ...
        def __getitem__(self, idx: int | slice) -> AlignProjector | _Pool: ...


class ProjectorBank(nn.ModuleList):
    """Pools of `E` projectors: one pool shared by all pairs, or one pool per pair.

    The state dict reads `{pool}.{ensemble}.fc1.weight`, the reference's ModuleList-of-ModuleList
    layout (a shared pool is stored once, under `0`).
    """

    def __init__(self, pools: Sequence[Sequence[AlignProjector]], num_pairs: int, shared: bool) -> None:
        super().__init__(nn.ModuleList(pool) for pool in pools)
        self.num_pairs = num_pairs
        self.shared = shared

    if TYPE_CHECKING:  # the pools' type (see _Pool); the methods are ModuleList's

        def __iter__(self) -> Iterator[_Pool]: ...
        @overload
        def __getitem__(self, idx: slice) -> ProjectorBank: ...
        @overload
        def __getitem__(self, idx: int) -> _Pool: ...
        def __getitem__(self, idx: int | slice) -> _Pool | ProjectorBank: ...

    @classmethod
    def create(
        cls,
        num_pairs: int,
        in_dim: int,
        out_dim: int,
        spec: ProjectorSpec,
        ensemble_size: int,
        shared: bool,
        use_matryoshka: bool,
    ) -> ProjectorBank:
        """Shared: one pool, Matryoshka widths over the pairs. Independent: one single-width pool per pair."""
        hidden = spec.hidden_dim or out_dim
        widths = bank_widths(num_pairs, hidden, spec, shared, use_matryoshka)

        def make() -> AlignProjector:
            return AlignProjector(
                in_dim, out_dim, hidden, widths, spec.use_vlm_norm, spec.layer_norm_eps, spec.activation
            )

        num_pools = 1 if shared else num_pairs
        return cls([[make() for _ in range(ensemble_size)] for _ in range(num_pools)], num_pairs, shared)

    def pool(self, pair: int) -> _Pool:
        return self[0] if self.shared else self[pair]

    def layer_index(self, pair: int) -> int:
        """A shared pool is called with the pair's position; a per-pair pool has one layer index."""
        return pair if self.shared else 0

    def pair_widths(self) -> list[int]:
        return [self.pool(i)[0].width(self.layer_index(i)) for i in range(self.num_pairs)]

    @property
    def ensemble_size(self) -> int:
        return len(self[0])
