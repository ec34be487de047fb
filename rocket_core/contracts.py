"""The plugin contracts (VLA adapter, teacher adapter, projector strategy, benchmark) and the records they exchange.

An adapter class is cheap to import and describe: `info(spec)` answers from configuration alone, so a
spec can be validated (layer ranges, widths, token counts) before any weights are loaded. `build(spec)`
does the heavy work and returns the model. This module imports no torch: listing plugins costs only
their metadata (plugins import torch inside `build` and their model modules, never at the top).
"""
from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Generic,
    Literal,
    Mapping,
    NotRequired,
    Protocol,
    Sequence,
    TypedDict,
    TypeVar,
    runtime_checkable,
)

from rocket_core.errors import RocketError

if TYPE_CHECKING:  # torch only in annotations: listing plugins and `--help` must not import it
    import torch
    from pydantic import BaseModel

    from rocket_core.align.projector import ProjectorBank
    from rocket_core.conventions import Conventions
    from rocket_core.eval.envs import IsolatedEnv
    from rocket_core.eval.protocol import Protocol as EvalProtocol
    from rocket_core.specs import ProjectorSpec, TeacherSpec, TrainingSpec, VLASpec  # noqa: F401 (string generics)


class Batch(TypedDict):
    """The canonical training batch every VLA adapter accepts (the data pipeline produces it).

    Images are raw camera frames in [0, 1]; each adapter applies its own processor (resize,
    normalisation, tokenisation), so the same batch feeds any VLA and, unchanged, the teacher.
    """

    images: torch.Tensor  # (B, n_cam, 3, H, W) float in [0, 1], after geometric/colour augmentation
    image_masks: torch.Tensor  # (B, n_cam) bool: camera present
    state: torch.Tensor  # (B, state_dim) normalised proprio
    actions: torch.Tensor  # (B, chunk, action_dim) normalised action chunk
    task: list[str]  # language instruction per sample
    action_is_pad: NotRequired[torch.Tensor]  # (B, chunk) bool: padded slots past the episode end
    teacher_images: NotRequired[torch.Tensor]  # (B, n_cam, 3, H, W): the teacher's view if it differs
    index: NotRequired[torch.Tensor]  # (B,) int64: dataset row of each sample (keys the teacher-feature cache)
    crop_box: NotRequired[torch.Tensor]  # (B, n_cam, 4) float: (top, left, height, width) of the crop, image fractions


@dataclass(frozen=True)
class VLAInfo:
    """What the engine must know about a VLA before loading it.

    Layer indices are the adapter's hidden-state indices. With `layer_offset` 1 (default), 0 = the
    embeddings and k = the output of block k-1; with `layer_offset` 0 (pi0 `index_convention: jax`)
    k = the output of block k. `minus_one` is what `-1` means for this adapter (OpenVLA
    follows the reference: the output of the second-to-last index, not the final norm).
    """

    num_blocks: int
    hidden_size: int
    num_vision_tokens: int
    max_layer_index: int
    layer_offset: int = 1
    minus_one: int | None = None
    num_images: int = 1
    default_layers: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (VLA side, teacher side)
    # What the data pipeline must produce for this VLA (None: take the dataset's / the data spec's).
    chunk_size: int | None = None
    action_dim: int | None = None
    state_dim: int | None = None
    normalization: str = "quantile"  # "quantile" (OpenVLA-OFT q01/q99) or "mean_std" (pi0)
    # Which benchmark protocol presets (`rocket eval`) this VLA was evaluated with in its own papers: one of
    # a benchmark's `families` ("": the benchmark's first).
    eval_family: str = ""

    @property
    def tokens_per_image(self) -> int:
        """Vision tokens of one camera: `num_vision_tokens` is `num_images` of these, frame-major."""
        return self.num_vision_tokens // max(self.num_images, 1)


@dataclass(frozen=True)
class TeacherInfo:
    """Shape facts of a teacher: `extract` returns (B, S, ph*pw, feature_dim) per requested layer."""

    num_layers: int
    feature_dim: int
    patch_grid: tuple[int, int]
    image_size: tuple[int, int]


@dataclass
class VLAOutput:
    """One forward of a VLA: the action loss plus the vision-token states of the requested layers.

    `action_loss` is a scalar; `vision_states[k]` is (B, V, hidden_size) with V = `info.num_vision_tokens`
    (camera 0's tokens, then camera 1's, ...); `token_mask` is None or (B, V) bool (False: token ignored).
    """

    action_loss: torch.Tensor
    vision_states: dict[int, torch.Tensor]
    token_mask: torch.Tensor | None = None


@runtime_checkable
class VLAModel(Protocol):
    """A built VLA (an `nn.Module`)."""

    info: VLAInfo

    def forward_align(self, batch: Batch, layers: Sequence[int]) -> VLAOutput:
        """Action loss and `{layer: (B, V, D)}` for `layers` (resolved hidden-state indices), same pass."""

    def configure_training(self, training: TrainingSpec) -> None:
        """Apply `training.finetune` (LoRA with `training.lora`, or full) and gradient checkpointing.

        Afterwards `requires_grad` marks exactly the parameters that train (LoRA matrices plus the
        parts that always train in full, such as an action head); the trainer optimises those.
        """

    def predict_action(self, batch: Batch) -> torch.Tensor:
        """(B, chunk, action_dim) normalised actions for a batch without `actions` (what `rocket serve` runs)."""


@runtime_checkable
class TeacherModel(Protocol):
    """A built, frozen teacher."""

    info: TeacherInfo

    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """`{layer: (B, S, P, C)}` patch tokens of only the requested layers, from (B, S, 3, H, W) in [0, 1]."""


class _Plugin(ABC):
    """Common plugin metadata shown by `rocket plugins`, and the plugin's own typed options.

    `options_model` (a pydantic model) validates the spec's `options` mapping; a plugin without one
    takes no options. Validation errors are one line naming the plugin and every bad key.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    options_model: ClassVar[type[BaseModel] | None] = None

    @classmethod
    def parse_options(cls, options: Mapping[str, Any]) -> BaseModel | None:
        """The validated options (None when the plugin declares no `options_model` and none are given)."""
        from pydantic import ValidationError

        from rocket_core.specs import format_validation_error

        if cls.options_model is None:
            if options:
                raise RocketError(f"plugin '{cls.name}' takes no options, got {', '.join(sorted(options))}; "
                                  "remove them")
            return None
        try:
            return cls.options_model.model_validate(dict(options))
        except ValidationError as exc:
            raise RocketError(format_validation_error(exc, f"{cls.name} options")) from None


def _resolve_index(index: int, top: int, minus_one: int, what: str) -> int:
    resolved = minus_one if index == -1 else index
    if not 0 <= resolved <= top:
        raise RocketError(
            f"{what} layer {index} is out of range: valid indices are 0..{top} (or -1 for {minus_one})"
        )
    return resolved


SpecT = TypeVar("SpecT")
InfoT = TypeVar("InfoT")
ModelT = TypeVar("ModelT")


class _ModelAdapter(_Plugin, Generic[SpecT, InfoT, ModelT]):
    """Factory and metadata for one model family: cheap `info`, heavy `build`.

    `check_preset` is the small random-weight configuration `rocket plugins check` builds (and what
    `--preset tiny` should give: the real architecture, shrunk, seconds to build on a CPU).
    `default_checkpoint` is the Hub repo (or path) loaded when a spec names no checkpoint and no preset
    (`rocket pull NAME` fetches it; None: the family has no default weights), and `weight_patterns` the
    files of it that `build` reads (empty: all), so a pull and the teacher cache's key see the same files.
    """

    check_preset: ClassVar[str | None] = "tiny"
    default_checkpoint: ClassVar[str | None] = None
    weight_patterns: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abstractmethod
    def info(cls, spec: SpecT) -> InfoT:
        """Describe what `spec` would build, without loading weights."""

    @classmethod
    @abstractmethod
    def build(cls, spec: SpecT) -> ModelT:
        """Build (and load) the model."""


class VLAAdapter(_ModelAdapter["VLASpec", VLAInfo, VLAModel]):
    """A VLA family.

    `profile_params`: name substrings of the parameters `rocket profile grad-conflict` monitors by
    default (typically the LoRA matrices of the first LLM layer).
    """

    profile_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def resolve_layer(cls, info: VLAInfo, index: int) -> int:
        """Map a user index (`-1` included) to a hidden-state index, or fail naming the valid range."""
        minus_one = info.max_layer_index if info.minus_one is None else info.minus_one
        return _resolve_index(index, info.max_layer_index, minus_one, f"VLA '{cls.name}'")

    @classmethod
    def read_foreign(cls, path: Path, device: str | None = None) -> tuple[VLASpec, Conventions] | None:
        """A checkpoint folder in the format of this family's reference code (not a rocket run): the spec
        that rebuilds it and its data conventions, or None when `path` is not one. `rocket serve` asks every
        VLA plugin before reading `path` as a run; the default recognises nothing."""
        return None


class TeacherAdapter(_ModelAdapter["TeacherSpec", TeacherInfo, TeacherModel]):
    """A frozen teacher (`build` returns it in eval mode, without gradients)."""

    @classmethod
    def resolve_layer(cls, info: TeacherInfo, index: int) -> int:
        """Python-style `-1` (last layer); anything else must lie in 0..n-1."""
        top = info.num_layers - 1
        return _resolve_index(index, top, top, f"teacher '{cls.name}'")

    @classmethod
    def preview(cls, spec: TeacherSpec, images: Sequence[Path], output: Path) -> None:
        """Write a PNG of what the teacher predicts for `images` (`rocket teacher preview`); optional."""
        raise RocketError(f"teacher '{cls.name}' has no depth head to preview; use a teacher with one "
                          "(`rocket plugins` lists them)")


class ProjectorStrategy(_Plugin):
    """Builds the module mapping every pair's VLA states into teacher space."""

    max_pairs: ClassVar[int | None] = None

    @classmethod
    @abstractmethod
    def build(
        cls, num_pairs: int, in_dim: int, out_dim: int, spec: ProjectorSpec, ensemble_size: int
    ) -> ProjectorBank:
        """Return a bank whose state dict uses the reference names `{pair}.{ensemble}.fc1.weight`."""

    @classmethod
    def layout(
        cls, num_pairs: int, in_dim: int, out_dim: int, spec: ProjectorSpec, ensemble_size: int
    ) -> tuple[list[int], int]:
        """(width each pair uses, parameter count) for plans that load nothing (`rocket align --dry-run`).

        This default builds the bank on the meta device, which imports torch; override it with arithmetic.
        """
        import torch

        with torch.device("meta"):
            bank = cls.build(num_pairs, in_dim, out_dim, spec, ensemble_size)
        return bank.pair_widths(), sum(p.numel() for p in bank.parameters())


@dataclass(frozen=True)
class DatasetPreset:
    """Feature names (and known conventions) of one public dataset, as a benchmark declares them."""

    state: str
    action: str
    cameras: dict[str, str]  # VLA image slot -> dataset camera, in slot order
    gripper: str | None = None  # the gripper command's convention, as stored
    note: str = ""


@dataclass(frozen=True)
class DatasetConventions:
    """What a benchmark's recorded datasets hold beyond feature names (written into `conventions.json`)."""

    orientation: Literal["rotated_180", "as_rendered", "unknown"] = "unknown"  # of the stored frames
    state: str | None = None  # what the state vector holds when it has `state_dim` dims
    state_dim: int | None = None


@dataclass(frozen=True)
class Check:
    """One `rocket doctor` line."""

    name: str
    ok: bool | None  # None: not applicable / informational
    detail: str
    fix: str = ""


class BenchmarkAdapter(_Plugin):
    """A simulator benchmark evaluated as a client of `rocket serve`.

    A benchmark names its suites, pins its protocol presets, says which Python runs its simulator (ours
    when its dependencies fit, otherwise an isolated environment that `setup` creates and fills) and which
    import-light module (`sim_module`, run by `rocket_core.eval.worker`) lists tasks and makes environments.
    `doctor` returns real probes, one line each, with the fix.

    `families` are the policy families (`VLAInfo.eval_family`) it pins presets for, the default first.
    With `checkpoint_conventions`, its simulator takes the gripper as -1 open / +1 close and renders the
    frames its datasets store (possibly rotated), so a checkpoint's gripper and orientation conventions
    replace the preset's (`eval.protocol.apply_conventions`). Its datasets are described by
    `dataset_presets`, `task_groups` and `dataset_conventions` (`rocket_core.data.keymap` asks every benchmark).
    With `expert`, its environments answer `expert(request) -> actions`: a scripted policy that reads the
    simulator's own state (`rocket eval --policy expert`: demos to record, and a check of the success rule).
    """

    suites: ClassVar[tuple[str, ...]] = ()
    families: ClassVar[tuple[str, ...]] = ()
    checkpoint_conventions: ClassVar[bool] = False
    expert: ClassVar[bool] = False
    sim_module: ClassVar[str] = ""
    env_name: ClassVar[str | None] = None  # isolated environment name; None: runs in this Python
    setup_hint: ClassVar[str] = ""

    @classmethod
    @abstractmethod
    def protocol(cls, suite: str, family: str) -> EvalProtocol:
        """The pinned evaluation preset of `suite` for a VLA of `family` (`VLAInfo.eval_family`)."""

    @classmethod
    def check_suite(cls, suite: str) -> str:
        if suite not in cls.suites:
            raise RocketError(f"benchmark '{cls.name}' has no suite '{suite}'; suites: {', '.join(cls.suites)}")
        return suite

    @classmethod
    def env(cls) -> IsolatedEnv | None:
        from rocket_core.eval.envs import IsolatedEnv

        return IsolatedEnv(cls.env_name) if cls.env_name else None

    @classmethod
    def python(cls) -> str:
        env = cls.env()
        if env is None:
            return sys.executable
        if not env.ready():
            raise RocketError(f"benchmark '{cls.name}' is not set up (no environment at {env.path}); "
                              f"run: rocket eval --setup {cls.name}")
        return str(env.python)

    @classmethod
    def worker_env(cls) -> dict[str, str]:
        """Environment variables of a worker process: a PYTHONPATH holding only rocket_core and the package of
        `sim_module`, so the benchmark's own environment keeps its pinned versions of everything else."""
        from rocket_core.eval.envs import packages_path

        return {"PYTHONPATH": str(packages_path(["rocket_core", cls.sim_module.split(".")[0]]))}

    @classmethod
    def setup(cls, log: Callable[[str], None] = print, force: bool = False, assets: bool = False) -> dict[str, Any]:
        """Create and fill what the benchmark needs; returns a summary. Default: nothing to do."""
        return {"benchmark": cls.name, "environment": "this Python"}

    @classmethod
    def doctor(cls, quick: bool = False) -> list[Check]:
        """Probes of this benchmark (`quick`: no simulator start)."""
        return []

    @classmethod
    def fetch_assets(cls, log: Callable[[str], None] = print) -> Path:
        """Download the benchmark's assets (`rocket pull NAME`); returns where they are. Default: none to fetch."""
        raise RocketError(f"benchmark '{cls.name}' has no assets to pull; `rocket eval --setup {cls.name}` installs it")

    @classmethod
    def dataset_presets(cls) -> Mapping[str, DatasetPreset]:
        """Key-mapping presets of public datasets recorded in this benchmark, by Hub id or `data.preset` name."""
        return {}

    @classmethod
    def task_groups(cls) -> Mapping[str, str]:
        """Task group (suite) of each instruction (`keymap.normalize_task` form): a dataset mixing groups is
        normalised per group, as the reference does per suite."""
        return {}

    @classmethod
    def dataset_conventions(cls, dataset: str) -> DatasetConventions | None:
        """What a dataset of this benchmark (by name or path) stores, or None when it is not one of its own."""
        return None

    @classmethod
    def group_of(cls, task: dict[str, Any]) -> str | None:
        """The results table a task belongs to besides its suite (LIBERO-Plus: perturbation dimension)."""
        return task.get("group")

