"""The three plugin contracts (VLA adapter, teacher adapter, projector strategy) and the records they exchange.

An adapter class is cheap to import and describe: `info(spec)` answers from configuration alone, so a
spec can be validated (layer ranges, widths) before any weights are loaded. `build(spec)` does the
heavy work and returns the model.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Generic, NotRequired, Protocol, Sequence, TypedDict, TypeVar, runtime_checkable

from rocket_core.errors import RocketError

if TYPE_CHECKING:  # torch only in annotations: listing plugins and `--help` must not import it
    import torch

    from rocket_core.align.projector import ProjectorBank
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


@dataclass(frozen=True)
class TeacherInfo:
    """Shape facts of a teacher: `extract` returns (B, S, ph*pw, feature_dim) per requested layer."""

    num_layers: int
    feature_dim: int
    patch_grid: tuple[int, int]
    image_size: tuple[int, int]


@dataclass
class VLAOutput:
    """One forward of a VLA: the action loss plus the vision-token states of the requested layers."""

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


@runtime_checkable
class TeacherModel(Protocol):
    """A built, frozen teacher."""

    info: TeacherInfo

    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """`{layer: (B, S, P, C)}` patch tokens of only the requested layers, from (B, S, 3, H, W) in [0, 1]."""


class _Plugin(ABC):
    """Common plugin metadata shown by `rocket plugins`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"


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
    """Factory and metadata for one model family: cheap `info`, heavy `build`."""

    @classmethod
    @abstractmethod
    def info(cls, spec: SpecT) -> InfoT:
        """Describe what `spec` would build, without loading weights."""

    @classmethod
    @abstractmethod
    def build(cls, spec: SpecT) -> ModelT:
        """Build (and load) the model."""


class VLAAdapter(_ModelAdapter["VLASpec", VLAInfo, VLAModel]):
    """A VLA family."""

    @classmethod
    def resolve_layer(cls, info: VLAInfo, index: int) -> int:
        """Map a user index (`-1` included) to a hidden-state index, or fail naming the valid range."""
        minus_one = info.max_layer_index if info.minus_one is None else info.minus_one
        return _resolve_index(index, info.max_layer_index, minus_one, f"VLA '{cls.name}'")


class TeacherAdapter(_ModelAdapter["TeacherSpec", TeacherInfo, TeacherModel]):
    """A frozen teacher (`build` returns it in eval mode, without gradients)."""

    @classmethod
    def resolve_layer(cls, info: TeacherInfo, index: int) -> int:
        """Python-style `-1` (last layer); anything else must lie in 0..n-1."""
        top = info.num_layers - 1
        return _resolve_index(index, top, top, f"teacher '{cls.name}'")


class ProjectorStrategy(_Plugin):
    """Builds the module mapping every pair's VLA states into teacher space."""

    max_pairs: ClassVar[int | None] = None

    @classmethod
    @abstractmethod
    def build(
        cls, num_pairs: int, in_dim: int, out_dim: int, spec: ProjectorSpec, ensemble_size: int
    ) -> ProjectorBank:
        """Return a bank whose state dict uses the reference names `{pair}.{ensemble}.fc1.weight`."""


class BenchmarkAdapter(_Plugin):
    """A simulator benchmark evaluated as a client of `rocket serve` (base: `rocket_core.eval.base.Benchmark`)."""


PLUGIN_BASES: dict[str, type[_Plugin]] = {
    "vla": VLAAdapter,
    "teacher": TeacherAdapter,
    "projector": ProjectorStrategy,
    "benchmark": BenchmarkAdapter,
}
