"""Projector and pooling sizes from configuration alone (no torch), so a dry run plans without building.

`projector.ProjectorBank` and `pooling` compute their shapes with these same functions.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from rocket_core.specs import ProjectorSpec


def matryoshka_widths(
    hidden_dim: int,
    num_layers: int,
    width_ratios: Sequence[float] | None = None,
    use_matryoshka: bool = True,
    shallow_to_deep_increase: bool = True,
) -> tuple[list[float], list[int]]:
    """Width ratio and hidden width per layer index, exactly as the reference computes them.

    Default ratios are `0.2 + 0.8*i/max(L-1, 1)` in float64 in that order; widths truncate and are at
    least 1; reversal applies only with Matryoshka on.
    """
    if not use_matryoshka:
        ratios = [1.0] * num_layers
    else:
        if width_ratios is None:
            ratios = [0.2 + 0.8 * i / max(num_layers - 1, 1) for i in range(num_layers)]
        else:
            if len(width_ratios) != num_layers:
                raise ValueError(f"width_ratios has {len(width_ratios)} entries for {num_layers} layers")
            ratios = [float(r) for r in width_ratios]
        if not shallow_to_deep_increase:
            ratios = ratios[::-1]
    return ratios, [max(1, int(hidden_dim * r)) for r in ratios]


def bank_widths(num_pairs: int, hidden: int, spec: ProjectorSpec, shared: bool, use_matryoshka: bool) -> list[int]:
    """The widths each projector of a bank holds: per pair for a shared pool, one for a per-pair pool."""
    if shared:
        return matryoshka_widths(hidden, num_pairs, spec.width_ratios, use_matryoshka, spec.shallow_to_deep_increase)[1]
    return matryoshka_widths(hidden, 1, use_matryoshka=use_matryoshka)[1]


def bank_layout(num_pairs: int, in_dim: int, out_dim: int, spec: ProjectorSpec, ensemble_size: int, shared: bool,
                use_matryoshka: bool) -> tuple[list[int], int]:
    """(width each pair uses, parameter count) of the bank `ProjectorBank.create` builds from the same arguments."""
    hidden = spec.hidden_dim or out_dim
    widths = bank_widths(num_pairs, hidden, spec, shared, use_matryoshka)
    per_pair = [widths[min(i, len(widths) - 1)] if shared else widths[0] for i in range(num_pairs)]
    one = (2 * in_dim if spec.use_vlm_norm else 0) + in_dim * hidden + hidden + hidden * out_dim + out_dim
    return per_pair, one * ensemble_size * (1 if shared else num_pairs)


def pooled_grid(frames: int, patch_grid: tuple[int, int], ref_len: int) -> tuple[int, int]:
    """Output grid per frame: `int(ph*r), int(pw*r)` with `r = 1/sqrt(S*P/ref_len)` in float64.

    The truncation means the token count can differ from `ref_len`; we reproduce that, not fix it.
    """
    ph, pw = patch_grid
    r = 1 / math.sqrt(frames * ph * pw / ref_len)
    return int(ph * r), int(pw * r)
