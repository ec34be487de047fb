"""Typed run specs (pydantic v2) and config-file loading.

Specs are the only way configuration enters: a config file and CLI flags both become one validated
`RunSpec`, which is saved (layers resolved) with every checkpoint and result.
"""
from __future__ import annotations

import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rocket_core.data.spec import DataSpec
from rocket_core.errors import RocketError
from rocket_core.hub import hub_id


def _wants_number(annotation: Any) -> bool:
    """Whether a field annotation holds int/float values (directly, optionally, or in a list/tuple) and no bool."""
    if annotation in (int, float):
        return True
    args = typing.get_args(annotation)
    if not args or bool in args:
        return False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_wants_number(a) for a in args if a is not type(None))
    return origin in (list, tuple) and all(_wants_number(a) for a in args if a is not Ellipsis)


class _Spec(BaseModel):
    # No inf/nan anywhere: an infinite learning rate or coefficient only shows up as NaN losses much later.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic's lax mode reads `true` as 1; in a numeric field it is always a mistake."""
        field = cls.model_fields.get(info.field_name or "")
        items = value if isinstance(value, (list, tuple)) else (value,)
        if field is not None and _wants_number(field.annotation) and any(isinstance(v, bool) for v in items):
            raise ValueError("expected a number, not true/false")
        return value


class VLASpec(_Spec):
    """Which VLA to align and where its weights come from (the CLI supplies the quickstart's plugin names)."""

    name: str = Field(description="VLA plugin name (see `rocket plugins`)")
    checkpoint: str | None = Field(None, description="Hub repo id or local path; None = the plugin's default")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin")
    preset: str | None = Field(None, description="named configuration, e.g. 'tiny' (random init, real architecture)")
    options: dict[str, Any] = Field(default_factory=dict, description="plugin-specific settings")

    @field_validator("checkpoint")
    @classmethod
    def _plain_repo_id(cls, v: str | None) -> str | None:
        """`hf://ORG/NAME` (explicitly the Hub) is stored as the repo id every plugin and the HF cache expect."""
        return hub_id(v) or v if v else v


class TeacherSpec(VLASpec):
    """Which frozen teacher provides the targets."""

    name: str = Field(description="teacher plugin name (see `rocket plugins`)")


class ProjectorSpec(_Spec):
    """Projector strategy and its shape. Defaults follow the reference `AlignProjector`."""

    name: str = Field(description="projector strategy plugin name (see `rocket plugins`)")
    hidden_dim: int | None = Field(None, gt=0, description="fc1 width; None = the teacher feature width")
    use_vlm_norm: bool = True
    layer_norm_eps: float = Field(1e-5, gt=0)
    activation: Literal["gelu", "gelu_tanh"] = Field("gelu", description="gelu = exact erf; gelu_tanh = JAX variant")
    width_ratios: list[float] | None = Field(None, description="Matryoshka ratio per pair (length = number of pairs)")
    shallow_to_deep_increase: bool = True
    reference_width_quirk: bool = Field(
        False, description="independent/single: use 20 % of the hidden width per projector, as the reference does"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="strategy-specific settings")

    @field_validator("width_ratios")
    @classmethod
    def _ratios_positive(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and any(not 0 < r <= 1 for r in v):
            raise ValueError("every width ratio must lie in (0, 1]")
        return v


class LayerMap(_Spec):
    """Pairs of (VLA hidden-state index, teacher layer index), in pair order (shallow to deep)."""

    vla: list[int]
    teacher: list[int]

    @model_validator(mode="after")
    def _same_length(self) -> LayerMap:
        if not self.vla:
            raise ValueError("the layer map is empty: give at least one (VLA, teacher) pair")
        if len(self.vla) != len(self.teacher):
            raise ValueError(
                f"the layer map has {len(self.vla)} VLA layers but {len(self.teacher)} teacher layers; "
                "give one teacher layer per VLA layer"
            )
        return self

    @property
    def pairs(self) -> list[tuple[int, int]]:
        return list(zip(self.vla, self.teacher))


class AlignmentSpec(_Spec):
    """How the alignment loss is formed."""

    coefficient: float = Field(0.5, ge=0, description="total = action_loss + coefficient * align_loss")
    pooling: Literal["bilinear", "random"] = "bilinear"
    teacher_pe: bool = Field(True, description="add the 2-D sin-cos embedding (x0.1) to teacher tokens before pooling")
    ensemble_size: int = Field(1, ge=1)
    cosine_eps: float | None = Field(
        None, gt=0, description="None: F.normalize (clamp 1e-12); a number: x / (|x| + eps), the JAX variant"
    )


class LoraSpec(_Spec):
    """peft LoRA on the adapter's `lora_target_modules` (paper: r 32, alpha 16, dropout 0, gaussian init)."""

    rank: int = Field(32, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)


class TrainingSpec(_Spec):
    """Optimisation settings of `rocket align`."""

    seed: int = Field(7, ge=0, le=2**32 - 1, description="0 .. 2^32-1 (numpy's seed range)")
    max_steps: int = Field(50, ge=1)
    batch_size: int = Field(
        8, ge=1, description="per process and per micro-step (8: the recipes'; at 2 the L1 / flow-matching gradient "
        "noise keeps even a tiny model from fitting a few frames, issue 21)"
    )
    grad_accum: int = Field(1, ge=1)
    learning_rate: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "multistep", "cosine"] = "multistep"
    milestones: list[int] = Field(default_factory=list, description="multistep: steps where lr is multiplied by gamma")
    gamma: float = Field(0.1, gt=0)
    warmup_steps: int = Field(0, ge=0)
    min_learning_rate: float = Field(0.0, ge=0, description="cosine: final learning rate")
    clip_grad_norm: float | None = Field(1.0, gt=0)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    finetune: Literal["lora", "full"] = Field("lora", description="lora: LoRA + fully trained parts; full: everything")
    lora: LoraSpec = Field(default_factory=LoraSpec)
    gradient_checkpointing: bool = False
    distributed: Literal["ddp", "fsdp"] = Field("ddp", description="multi-process strategy (fsdp shards on GPUs)")
    mixed_precision: Literal["auto", "no", "bf16"] = Field("auto", description="auto: bf16 on GPU, float32 on CPU")
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: only at the end)")
    log_every: int = Field(1, ge=1)
    report_to: Literal["none", "tensorboard", "wandb"] = Field(
        "none", description="tracker the metrics also go to (accelerate's log_with), next to metrics.jsonl"
    )
    num_workers: int = Field(0, ge=0)
    teacher_cache: str | None = Field(
        None, description="teacher-feature cache folder (docs/cache.md): targets are read from it, missing ones "
        "computed and stored; None = run the teacher every step"
    )
    teacher_cache_dtype: Literal["fp16", "bf16", "fp32"] = Field("fp16", description="storage dtype of cache entries")
    teacher_cache_on_augment: Literal["crop", "teacher"] = Field(
        "crop", description="random crops: crop the cached feature grid (an approximation) or run the teacher"
    )

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("AdamW betas must each lie in [0, 1), e.g. [0.9, 0.999]")
        return v

    @model_validator(mode="after")
    def _milestones_in_run(self) -> TrainingSpec:
        outside = [m for m in self.milestones if not 1 <= m <= self.max_steps]
        if outside:
            raise ValueError(
                f"milestones {outside} lie outside the run (steps 1..{self.max_steps}); "
                "drop them (training.milestones in a --config file) or raise max_steps"
            )
        return self


class RunSpec(_Spec):
    """Everything one `rocket align` run needs."""

    vla: VLASpec
    teacher: TeacherSpec
    projector: ProjectorSpec
    layers: LayerMap | str | None = Field(
        None, description="explicit map, 'balanced:K', a layer-map file, or 'v1,v2:t1,t2'; None = the VLA's default"
    )
    alignment: AlignmentSpec = Field(default_factory=AlignmentSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    data: DataSpec = Field(default_factory=DataSpec)


def format_validation_error(exc: ValidationError, what: str = "spec") -> str:
    """One line naming every bad field and why."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-")) or what
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" + (f" (got {err['input']!r})" if err["type"] != "missing" else ""))
    return f"invalid {what}: " + "; ".join(parts)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, typing.Hashable):
                continue  # the base class reports unhashable keys
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (give each key once)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise ValueError(f"duplicate key {', '.join(repr(k) for k in dupes)} (give each key once)")
    return dict(pairs)


def load_config_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Read a YAML, TOML or JSON mapping, with one-line errors; `what` names the file in them (e.g. layer-map file)."""
    p = Path(path)
    if not p.is_file():
        raise RocketError(f"{what} '{p}' does not exist; check the path")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise RocketError(f"{what} '{p}' is not a text file (binary data); give a YAML, TOML or JSON file")
    try:
        if p.suffix in (".yaml", ".yml"):
            data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        elif p.suffix == ".json":
            data = json.loads(text, object_pairs_hook=_json_pairs)
        else:
            raise RocketError(f"{what} '{p}' has an unknown extension; use .yaml, .yml, .toml or .json")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        mark = getattr(exc, "problem_mark", None)
        detail = (f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
                  if isinstance(exc, yaml.MarkedYAMLError) and mark is not None and exc.problem
                  else " ".join(str(exc).split()))
        raise RocketError(f"{what} '{p}' is not valid {p.suffix[1:].upper()}: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RocketError(f"{what} '{p}' must hold a mapping at the top level, not {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` wins; nested mappings merge key by key (CLI flags over file values)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def build_spec(
    config: str | Path | None = None, overrides: dict[str, Any] | None = None, base: dict[str, Any] | None = None
) -> RunSpec:
    """Base (e.g. a recipe) < config file < overrides (CLI flags) -> validated RunSpec."""
    data = deep_merge(base or {}, load_config_file(config) if config else {})
    data = deep_merge(data, overrides or {})
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise RocketError(format_validation_error(exc)) from None
