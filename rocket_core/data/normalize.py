"""State/action normalisation from a dataset's statistics, and its inverse for rollouts.

Two modes, matching the VLAs' own recipes:
* `quantile` (OpenVLA-OFT): `clip(2 (x - q01) / (q99 - q01 + eps) - 1, -1, 1)`, eps = 1e-8;
* `mean_std` (pi0): `(x - mean) / (std + eps)`, eps = 1e-8.
Dimensions whose mask entry is False (e.g. a gripper already in [-1, 1]) pass through unchanged.
`GroupNormalizer` keeps one `Normalizer` per task group (LIBERO suite), as the reference normalises and
un-normalises each suite with its own statistics.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch

from rocket_core.errors import RocketError

NormMode = Literal["quantile", "mean_std"]
_STAT_NAMES: dict[str, tuple[str, str]] = {"quantile": ("q01", "q99"), "mean_std": ("mean", "std")}
EPS = 1e-8


class Normalizer:
    """Per-dimension affine normalisation of one feature; `unnormalize` inverts `normalize` (up to clipping)."""

    def __init__(self, mode: NormMode, low: torch.Tensor, high: torch.Tensor, mask: torch.Tensor) -> None:
        self.mode = mode
        self.low, self.high, self.mask = low.float(), high.float(), mask.bool()

    @classmethod
    def from_stats(
        cls, stats: Mapping[str, Mapping[str, np.ndarray]], key: str, mode: NormMode, exclude: Sequence[int] = ()
    ) -> Normalizer:
        """Build from `stats[key]`; `exclude` lists dimensions (negative allowed) left unnormalised."""
        if mode not in _STAT_NAMES:
            raise RocketError(f"unknown normalisation '{mode}'; use one of {', '.join(_STAT_NAMES)}")
        names = _STAT_NAMES[mode]
        feature = stats.get(key, {})
        missing = [n for n in names if n not in feature]
        if missing:
            raise RocketError(
                f"the dataset statistics have no {'/'.join(missing)} for '{key}', which '{mode}' normalisation needs; "
                f"check data.state_key/data.action_key or choose the other mode"
            )
        low, high = (torch.as_tensor(np.asarray(feature[n], dtype=np.float64).reshape(-1)) for n in names)
        mask = torch.ones(low.numel(), dtype=torch.bool)
        for dim in exclude:
            if not -low.numel() <= dim < low.numel():
                raise RocketError(
                    f"cannot exclude dimension {dim} of '{key}' from normalisation: it has {low.numel()} dimensions"
                )
            mask[dim] = False
        return cls(mode, low, high, mask)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw values (..., D) -> normalised."""
        if self.mode == "quantile":
            y = torch.clamp(2 * (x - self.low) / (self.high - self.low + EPS) - 1, -1, 1)
        else:
            y = (x - self.low) / (self.high + EPS)
        return torch.where(self.mask, y, x)

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Normalised values (..., D), e.g. predicted actions -> raw robot units."""
        if self.mode == "quantile":
            x = (y + 1) / 2 * (self.high - self.low + EPS) + self.low
        else:
            x = y * (self.high + EPS) + self.low
        return torch.where(self.mask, x, y)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, saved with a checkpoint so inference needs no dataset."""
        return {"mode": self.mode, "low": self.low.tolist(), "high": self.high.tolist(), "mask": self.mask.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalizer:
        return cls(data["mode"], torch.tensor(data["low"]), torch.tensor(data["high"]), torch.tensor(data["mask"]))


class GroupNormalizer:
    """One `Normalizer` per task group; a dataset with one group has the group "all"."""

    def __init__(self, norms: Mapping[str, Normalizer]) -> None:
        if not norms:
            raise RocketError("a group normaliser needs at least one group")
        self.norms = dict(norms)

    @classmethod
    def from_group_stats(cls, group_stats: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]], key: str,
                         mode: NormMode, exclude: Sequence[int] = ()) -> GroupNormalizer:
        return cls({group: Normalizer.from_stats(stats, key, mode, exclude) for group, stats in group_stats.items()})

    @property
    def groups(self) -> list[str]:
        return list(self.norms)

    def __getitem__(self, group: str) -> Normalizer:
        if group not in self.norms:
            raise RocketError(f"no normalisation statistics for group '{group}'; known groups: {', '.join(self.norms)}")
        return self.norms[group]

    def to_dict(self) -> dict[str, Any]:
        return {group: norm.to_dict() for group, norm in self.norms.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupNormalizer:
        return cls({group: Normalizer.from_dict(norm) for group, norm in data.items()})
