"""Data conventions of a checkpoint: what its actions, states and images mean, from data to simulator.

Every checkpoint carries a `conventions.json` written from its training data (the trainer calls
`from_dataset`), and a foreign folder gets what its VLA plugin reads from it (`VLAAdapter.read_foreign`).
`rocket eval` derives from it, not from the VLA's name: the gripper post-processing (raw LIBERO -1 = open / +1 = close, or the OFT RLDS
0 = close / 1 = open), the normalisation key of each suite (per-group statistics, as the reference's
`unnorm_key`) and the evaluation centre crop (the mean training crop area, resized back, as OFT).

Import-light (pydantic only): `rocket eval` and the simulator workers read it without torch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rocket_core.errors import RocketError

FILENAME = "conventions.json"
VERSION = 1
GripperKind = Literal["libero_raw", "oft_rlds", "none"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureNorm(_Model):
    """One feature's affine normalisation (`rocket_core.data.normalize.Normalizer.to_dict()`)."""

    mode: Literal["quantile", "mean_std"]
    low: list[float]
    high: list[float]
    mask: list[bool]


class GroupNorm(_Model):
    state: FeatureNorm | None = None
    action: FeatureNorm | None = None


class Normalization(_Model):
    """Per-dimension normalisation, one set per task group (LIBERO suite); `default` when no group is named."""

    mode: Literal["quantile", "mean_std"] = "quantile"
    groups: dict[str, GroupNorm] = Field(default_factory=dict)
    default: str | None = None


class Gripper(_Model):
    """The gripper dimension of the action in the dataset's units (after un-normalisation)."""

    kind: GripperKind = "none"
    dim: int = -1
    open: float | None = None  # the value that means "open" in the data
    close: float | None = None
    normalized: bool = False  # whether the dimension goes through the action normalisation

    def describe(self) -> str:
        if self.kind == "none":
            return "no gripper convention (passed through)"
        return f"{self.kind} (open {self.open:g}, close {self.close:g})"


class Images(_Model):
    """The image pipeline of training: orientation of the stored frames, size, cameras and crop."""

    orientation: Literal["rotated_180", "as_rendered", "unknown"] = "unknown"
    size: tuple[int, int] | None = None
    cameras: list[str] = Field(default_factory=list)
    train_crop_scale: tuple[float, float] | None = None  # random-crop area fraction (min, max); None = no crop

    @property
    def eval_center_crop(self) -> float:
        """Area fraction of the centre crop at evaluation (1.0 = none): the mean training crop area."""
        return 1.0 if self.train_crop_scale is None else round(sum(self.train_crop_scale) / 2, 6)


class Conventions(_Model):
    """What a checkpoint's numbers mean; saved as `conventions.json` beside its weights."""

    version: int = VERSION
    source: str = Field(..., description="rocket-align (from the training data) or the reference format of a foreign folder")
    dataset: str | None = None
    state_key: str | None = None
    action_key: str | None = None
    state: str | None = Field(None, description="what the state vector holds, e.g. eef_pos+axis_angle+gripper_qpos")
    state_dim: int | None = None
    action_dim: int | None = None
    chunk: int | None = None
    normalization: Normalization = Field(default_factory=Normalization)
    gripper: Gripper = Field(default_factory=Gripper)
    images: Images = Field(default_factory=Images)

    # ---- files ---------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "conventions") -> Conventions:
        try:
            conv = cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise RocketError(f"{where} is invalid at '{loc}': {first['msg']}; re-export the checkpoint") from None
        if conv.version > VERSION:
            raise RocketError(f"{where} has version {conv.version}, newer than this rocket ({VERSION}); upgrade rocket")
        return conv

    @classmethod
    def load(cls, folder: Path) -> Conventions | None:
        path = Path(folder) / FILENAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RocketError(f"'{path}' is unreadable ({type(exc).__name__}); re-export the checkpoint") from None
        return cls.from_dict(data, f"'{path}'")

    def save(self, folder: Path) -> Path:
        path = Path(folder) / FILENAME
        path.write_text(self.to_json())
        return path

    # ---- normalisation key -----------------------------------------------------------------------
    def group_for(self, suite: str | None, benchmark: str | None = None) -> str | None:
        """The normalisation group of a benchmark suite (the reference's `unnorm_key`), or None when the
        checkpoint has one set only. Fails naming the groups when several exist and none fits."""
        groups = list(self.normalization.groups)
        if len(groups) <= 1:
            return groups[0] if groups else None
        if suite is not None:
            prefixed = [f"{benchmark}_{suite}", f"{benchmark}_{suite}_no_noops"] if benchmark else []
            candidates = [*prefixed, suite, f"{suite}_no_noops"]
            for name in candidates:
                if name in self.normalization.groups:
                    return name
            loose = [g for g in groups if g.endswith(f"_{suite}") or f"_{suite}_" in g]
            if len(loose) == 1:
                return loose[0]
        if self.normalization.default in self.normalization.groups:
            return self.normalization.default
        raise RocketError(f"the checkpoint has statistics for groups {', '.join(groups)} and none matches suite "
                          f"'{suite}'; choose one with --unnorm-key")


def detect_gripper(low: float, high: float, dim: int = -1, normalized: bool = False) -> Gripper:
    """The gripper convention of data whose gripper values span [low, high] (min/max of the dataset).

    LIBERO's raw actions use -1 (open) / +1 (close); OFT's RLDS conversion maps them to 1 (open) / 0
    (close). Anything else has no known convention and passes through unchanged."""
    if low < -0.5 and -1.0 - 1e-3 <= low and high <= 1.0 + 1e-3:
        return Gripper(kind="libero_raw", dim=dim, open=-1.0, close=1.0, normalized=normalized)
    if -1e-3 <= low and high <= 1.0 + 1e-3 and high - low > 0.5:
        return Gripper(kind="oft_rlds", dim=dim, open=1.0, close=0.0, normalized=normalized)
    return Gripper(kind="none", dim=dim, normalized=normalized)


def gripper_map(gripper: Gripper) -> dict[str, bool]:
    """`protocol.GripperMap` fields that turn the data's gripper values into the command -1 open, +1 close."""
    if gripper.kind == "oft_rlds":  # 1 open / 0 close -> [-1, 1] -> flip (OFT normalize + invert)
        return {"rescale_01_to_pm1": True, "invert": True}
    return {"rescale_01_to_pm1": False, "invert": False}


def from_dataset(dataset: Any, data_spec: Any, info: Any = None) -> Conventions:
    """Conventions of a training dataset (`rocket_core.data.VLADataset` and its `DataSpec`).

    The normalisation per group is exactly what training applied: the dataset's own per-group normalisers
    (one group "all" when the dataset has a single task group)."""
    import numpy as np

    mode = data_spec.normalization
    keys = dataset.keys  # the resolved feature names (spec > dataset preset > usual names)
    groups = {name: GroupNorm(state=FeatureNorm(**dataset.state_norms[name].to_dict()),
                              action=FeatureNorm(**dataset.action_norms[name].to_dict()))
              for name in dataset.action_norms.groups}
    actions = np.asarray(dataset.reader.column(keys.action))
    actions = actions.reshape(len(actions), -1)
    grip = actions[:, -1] if len(actions) and actions.shape[1] == 7 else np.zeros(1)  # single-arm (LIBERO) only
    normalized = bool(dataset.action_norms[dataset.action_norms.groups[0]].mask[-1])
    augment = data_spec.augment
    crop = tuple(augment.crop_scale) if augment.enabled and min(augment.crop_scale) < 1 else None
    name = data_spec.dataset or "bundled"
    state_dim = int(np.prod(np.asarray(dataset.reader.column(keys.state)).shape[1:]))
    recorded = keys.recorded  # what the dataset's benchmark says it stores (none: unknown)
    return Conventions(
        source="rocket-align", dataset=name, state_key=keys.state, action_key=keys.action,
        state=recorded.state if recorded and state_dim == recorded.state_dim else None,
        state_dim=state_dim, action_dim=int(actions.shape[-1]),
        chunk=data_spec.chunk_size,
        normalization=Normalization(mode=mode, groups=groups, default=next(iter(groups))),
        gripper=detect_gripper(float(grip.min()), float(grip.max()), normalized=normalized),
        images=Images(orientation=recorded.orientation if recorded else "unknown",
                      size=tuple(dataset.image_size), cameras=list(dataset.slots), train_crop_scale=crop),
    )

