"""Teachers from transformers (entry point `hf-teachers`): DINOv2 (2-D baseline) and Depth Anything V2.

Both are DINOv2 ViTs (Depth Anything's backbone is one), so one extraction serves both: embeddings,
then the transformer blocks up to the deepest requested one. Layer i is the output of block i (the raw
residual stream, before the final LayerNorm); the cls and register tokens are dropped.
Import-light (transformers loads only when a config or model is made). `info` answers from the default checkpoint's
known config (or a local/cached config.json), no weights.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar

from rocket_core import hookimpl
from rocket_core.contracts import TeacherAdapter, TeacherInfo
from rocket_core.errors import RocketError
from rocket_plugins.teachers.options import check_options

if TYPE_CHECKING:
    from torch import nn
    from transformers import PretrainedConfig, PreTrainedModel

    from rocket_core.specs import TeacherSpec
    from rocket_plugins.teachers.hf_model import FrozenDinoFamily

_TINY_VIT = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, image_size=56, patch_size=14)


def _transformers(name: str) -> Any:
    """A transformers class by name, imported only when a model or config is made."""
    import transformers

    return getattr(transformers, name)


def _dinov2(**sizes: Any) -> PretrainedConfig:
    return _transformers("Dinov2Config")(**sizes)


def _depth_anything(backbone: dict[str, Any], **sizes: Any) -> PretrainedConfig:
    return _transformers("DepthAnythingConfig")(backbone_config=_dinov2(**backbone), **sizes)


class _DinoFamilyTeacher(TeacherAdapter):
    """Shared adapter logic; subclasses name the model class, default checkpoint and input size."""

    default_checkpoint: ClassVar[str]
    default_config: ClassVar[Callable[[], PretrainedConfig]]
    tiny_config: ClassVar[Callable[[], PretrainedConfig]]
    model_class: ClassVar[str]  # transformers class name
    image_size: ClassVar[int]
    tiny_image_size: ClassVar[int] = _TINY_VIT["image_size"]
    weight_patterns: ClassVar[tuple[str, ...]] = ("*.json", "*.safetensors")

    @staticmethod
    def _vit(model: PreTrainedModel) -> nn.Module:
        return model

    @staticmethod
    def _vit_config(config: PretrainedConfig) -> PretrainedConfig:
        return config

    @classmethod
    def _config(cls, spec: TeacherSpec) -> PretrainedConfig:
        """The model config without weights: preset, local folder, HF cache, or the default's known values."""
        if spec.preset is not None:
            if spec.preset != "tiny":
                raise RocketError(f"unknown {cls.name} preset '{spec.preset}'; available presets: tiny")
            return cls.tiny_config()
        if spec.checkpoint is None or (spec.checkpoint == cls.default_checkpoint and spec.revision is None):
            return cls.default_config()
        from rocket_core.hub import local_path, resolve_weights

        path = local_path(spec.checkpoint)
        if path is None:  # another Hub repo: its config.json must be cached (or downloadable)
            path = resolve_weights(spec.checkpoint, spec.revision, ["config.json"])
        try:
            return _transformers("AutoConfig").from_pretrained(str(path))
        except (OSError, ValueError) as exc:
            raise RocketError(f"cannot read a transformers config from '{spec.checkpoint}': {exc}") from None

    @classmethod
    def info(cls, spec: TeacherSpec) -> TeacherInfo:
        check_options(cls.name, spec.options)
        vit = cls._vit_config(cls._config(spec))
        size = cls.tiny_image_size if spec.preset else cls.image_size
        grid = size // vit.patch_size
        return TeacherInfo(
            num_layers=vit.num_hidden_layers, feature_dim=vit.hidden_size, patch_grid=(grid, grid), image_size=(size, size)
        )

    @classmethod
    def build(cls, spec: TeacherSpec) -> FrozenDinoFamily:
        import torch

        from rocket_core.hub import resolve_weights
        from rocket_plugins.teachers.hf_model import FrozenDinoFamily

        resize = check_options(cls.name, spec.options)
        model_class = _transformers(cls.model_class)
        checkpoint = spec.checkpoint or (None if spec.preset else cls.default_checkpoint)
        if checkpoint is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # a preset without weights is the same teacher in every process
                model = model_class(cls._config(spec))
        else:
            folder = resolve_weights(
                checkpoint, spec.revision, cls.weight_patterns, pull_name=cls.name if checkpoint == cls.default_checkpoint else None
            )
            if not folder.is_dir():
                raise RocketError(f"teacher '{cls.name}' needs a model folder (config.json + weights), not the file '{folder}'")
            try:
                model = model_class.from_pretrained(str(folder))
            except (OSError, ValueError) as exc:
                raise RocketError(f"cannot load {cls.name} weights from '{folder}': {' '.join(str(exc).split())[:300]}") from None
        model = model.float().eval().requires_grad_(False)
        return FrozenDinoFamily(cls.name, model, cls._vit(model), cls.info(spec), resize)


class DINOv2Teacher(_DinoFamilyTeacher):
    """DINOv2 ViT-B/14 (transformers `Dinov2Model`): a 2-D teacher baseline."""

    name: ClassVar[str] = "dinov2"
    description: ClassVar[str] = "DINOv2 ViT-B/14 per-block patch tokens (2-D baseline, transformers)"
    default_checkpoint: ClassVar[str] = "facebook/dinov2-base"
    default_config = staticmethod(lambda: _dinov2(hidden_size=768, num_hidden_layers=12, num_attention_heads=12))
    tiny_config = staticmethod(lambda: _dinov2(**_TINY_VIT))
    model_class = "Dinov2Model"
    image_size: ClassVar[int] = 224  # the checkpoint's processor crops to 224


class DepthAnythingTeacher(_DinoFamilyTeacher):
    """Depth Anything V2 Small: the DINOv2 backbone of a monocular depth model (transformers)."""

    name: ClassVar[str] = "depth-anything"
    description: ClassVar[str] = "Depth Anything V2 (Small) backbone per-block patch tokens (transformers)"
    default_checkpoint: ClassVar[str] = "depth-anything/Depth-Anything-V2-Small-hf"
    default_config = staticmethod(lambda: _depth_anything(dict(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, out_indices=[3, 6, 9, 12], reshape_hidden_states=False
    )))
    tiny_config = staticmethod(lambda: _depth_anything(
        dict(**_TINY_VIT, out_indices=[1, 2, 3, 4], reshape_hidden_states=False),
        neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, head_hidden_size=8, reassemble_hidden_size=32,
    ))
    model_class = "DepthAnythingForDepthEstimation"
    image_size: ClassVar[int] = 518

    @staticmethod
    def _vit(model: PreTrainedModel) -> nn.Module:
        return model.backbone  # type: ignore[return-value]  # a submodule

    @staticmethod
    def _vit_config(config: PretrainedConfig) -> PretrainedConfig:
        return config.backbone_config


@hookimpl
def register_teachers(register: Callable[[type], None]) -> None:
    register(DINOv2Teacher)
    register(DepthAnythingTeacher)
