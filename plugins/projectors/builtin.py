"""Projector strategies: how the pairs share (or do not share) the alignment projector.

- rocket: one shared projector, Matryoshka prefix widths (shallow pairs use a narrower prefix).
- shared: one shared projector, every pair at full width.
- independent: one projector per pair ("naive multi-layer"); full width unless
  `reference_width_quirk` reproduces the reference's 20 % width.
- single: Spatial Forcing, exactly one pair, same width rule as independent.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from rocket_core import hookimpl
from rocket_core.align.layout import bank_layout
from rocket_core.contracts import ProjectorStrategy

if TYPE_CHECKING:  # torch loads with the bank, in `build`: listing the strategies stays light
    from rocket_core.align.projector import ProjectorBank
    from rocket_core.specs import ProjectorSpec


class RocketProjector(ProjectorStrategy):
    name = "rocket"
    description = "Shared projector with Matryoshka sparse activation (the paper's method)"
    shared = True
    matryoshka = True

    @classmethod
    def build(
        cls, num_pairs: int, in_dim: int, out_dim: int, spec: ProjectorSpec, ensemble_size: int
    ) -> ProjectorBank:
        from rocket_core.align.projector import ProjectorBank

        return ProjectorBank.create(num_pairs, in_dim, out_dim, spec, ensemble_size, cls.shared, cls._matryoshka(spec))

    @classmethod
    def layout(
        cls, num_pairs: int, in_dim: int, out_dim: int, spec: ProjectorSpec, ensemble_size: int
    ) -> tuple[list[int], int]:
        """Arithmetic only while `build` is ours: a subclass that builds another bank gets the measured layout."""
        if cls.build.__func__ is not RocketProjector.build.__func__:  # type: ignore[attr-defined]  # classmethod
            return super().layout(num_pairs, in_dim, out_dim, spec, ensemble_size)
        return bank_layout(num_pairs, in_dim, out_dim, spec, ensemble_size, cls.shared, cls._matryoshka(spec))

    @classmethod
    def _matryoshka(cls, spec: ProjectorSpec) -> bool:
        return cls.matryoshka if cls.shared else spec.reference_width_quirk


class SharedProjector(RocketProjector):
    name = "shared"
    description = "One projector shared by every pair, full width (ablation without Matryoshka)"
    matryoshka = False


class IndependentProjector(RocketProjector):
    name = "independent"
    description = "One projector per pair (naive multi-layer); reference_width_quirk = 20 % width"
    shared = False


class SingleProjector(IndependentProjector):
    name = "single"
    description = "Spatial Forcing: a single (VLA layer, teacher layer) pair"
    max_pairs = 1


@hookimpl
def register_projectors(register) -> None:
    for cls in (RocketProjector, SharedProjector, IndependentProjector, SingleProjector):
        register(cls)
