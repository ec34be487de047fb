"""Typed settings of the data pipeline (pydantic v2, same conventions as rocket_core.specs)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from rocket_core.data.source import BUNDLED


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # as rocket_core.specs


class AugmentSpec(_Spec):
    """Training augmentation. Defaults are OpenVLA-OFT's (the paper's runs): a 90 %-area square random
    crop resized back, then brightness, contrast, saturation and hue jitter, in that order."""

    enabled: bool = True
    crop_scale: tuple[float, float] = Field((0.9, 0.9), description="crop area as a fraction of the image (min, max)")
    crop_ratio: tuple[float, float] = Field((1.0, 1.0), description="crop aspect ratio w/h (min, max)")
    brightness: float = Field(0.2, ge=0, description="add U(-b, b)")
    contrast: tuple[float, float] = Field((0.8, 1.2), description="scale around the per-channel mean by U(lo, hi)")
    saturation: tuple[float, float] = Field((0.8, 1.2), description="scale HSV saturation by U(lo, hi)")
    hue: float = Field(0.05, ge=0, le=0.5, description="shift HSV hue by U(-h, h) turns")
    teacher_view: Literal["augmented", "pre_color_jitter"] = Field(
        "augmented",
        description="what the teacher sees: the VLA's augmented images, or the same crop before colour jitter "
        "(then the batch carries `teacher_images`)",
    )

    @model_validator(mode="after")
    def _ranges(self) -> AugmentSpec:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError("crop_scale must satisfy 0 < min <= max <= 1")
        for name in ("crop_ratio", "contrast", "saturation"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < min <= max")
        return self


class DataSpec(_Spec):
    """Which LeRobot dataset feeds the VLA and how samples are formed."""

    dataset: str | None = Field(None, description="local dataset root or Hub dataset repo id; None = the bundled dataset")
    revision: str | None = Field(None, description="Hub revision to pin")
    cameras: dict[str, str | None] | None = Field(
        None,
        description="VLA image slot (name or index, in slot order) -> dataset camera key (full key or the part after "
        "'observation.images.'); None = an empty, masked slot. None = every dataset camera in info.json order",
    )
    preset: str | None = Field(
        None,
        description="key-mapping preset of a known public dataset (a benchmark plugin's, named by its Hub id), for a "
        "local copy; None = the preset of `dataset` when it is such a Hub id (see `rocket data inspect`)",
    )
    state_key: str | None = Field(None, description="state feature; None = the preset's, else observation.state or state")
    action_key: str | None = Field(None, description="action feature; None = the preset's, else action or actions")
    episodes: list[int] | None = Field(
        None, description="train on these episodes only (their `episode_index` values, LeRobot's `episodes=`); "
        "None = every episode. Normalisation keeps the whole dataset's statistics"
    )
    max_frames: PositiveInt | None = Field(
        None, description="train on the first N frames of the selected episodes (e.g. an overfit check); None = all"
    )
    chunk_size: int = Field(8, ge=1, description="action chunk length of the VLA (frames, from the current one)")
    normalization: Literal["quantile", "mean_std"] = Field(
        "quantile", description="quantile = q01/q99 bounds to [-1, 1], mean_std = zero mean, unit std"
    )
    state_norm_exclude: list[int] = Field(default_factory=list, description="state dims left unnormalised")
    action_norm_exclude: list[int] = Field(
        default_factory=list, description="action dims left unnormalised, e.g. [-1] (gripper)"
    )
    groups: Literal["auto", "none"] = Field(
        "auto",
        description="auto: normalise each task group (a benchmark's suite) with its own statistics when the dataset "
        "mixes them (as the reference does); none: one pooled set of statistics",
    )
    allow_nonfinite: bool = Field(
        False, description="train on NaN/inf states or actions instead of refusing the dataset (statistics skip them)"
    )
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="resize every camera to (H, W); None = keep the dataset's size"
    )
    augment: AugmentSpec = Field(default_factory=AugmentSpec)

    @field_validator("dataset")
    @classmethod
    def _bundled(cls, value: str | None) -> str | None:
        """`bundled` is a name for the default dataset, so specs and cache keys do not tell the two apart."""
        return None if value == BUNDLED else value

    @field_validator("episodes")
    @classmethod
    def _episodes_unique(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v) or min(v) < 0):
            raise ValueError("episodes must be a non-empty list of distinct episode indices >= 0")
        return v
