"""The `vggt` teacher plugin (import-light: the model loads inside `build`).

Layer index i is the i-th frame/global block pair; its tokens are cat(frame out, global out), so the
feature width is 2 * embed_dim. `-1` is the last layer (ordinary Python indexing, as in ROCKET).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

from rocket_core.contracts import TeacherAdapter, TeacherInfo
from rocket_core.errors import RocketError
from rocket_plugins.teachers.options import check_options
from rocket_plugins.teachers.vggt.config import PRESETS, VGGT_1B, VGGTConfig, config_from_reference

if TYPE_CHECKING:
    from rocket_core.specs import TeacherSpec
    from rocket_plugins.teachers.vggt.teacher import FrozenVGGT


def resolve_config(spec: TeacherSpec) -> VGGTConfig:
    """Sizes without touching weights: a local folder's reference config.json, else the preset, else VGGT-1B."""
    if spec.preset is not None and spec.preset not in PRESETS:
        raise RocketError(f"unknown VGGT preset '{spec.preset}'; available presets: {', '.join(PRESETS)}")
    from rocket_core.hub import local_path

    path = local_path(spec.checkpoint) if spec.checkpoint else None
    config_file = (path if path.is_dir() else path.parent) / "config.json" if path is not None else None
    if config_file is not None and config_file.is_file():
        try:
            data = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise RocketError(f"'{config_file}' is not valid JSON: {exc}") from None
        if isinstance(data, dict) and "aggregator" in data:
            return config_from_reference(data)
    return PRESETS[spec.preset] if spec.preset else VGGT_1B



class VGGTTeacher(TeacherAdapter):
    """VGGT-1B (Wang et al., CVPR 2025): the ROCKET 3D teacher."""

    name: ClassVar[str] = "vggt"
    description: ClassVar[str] = "VGGT 3D geometry transformer (frame+global tokens, own implementation)"
    version: ClassVar[str] = "0.1.0"
    default_checkpoint: ClassVar[str] = "facebook/VGGT-1B"
    weight_patterns: ClassVar[tuple[str, ...]] = ("model.safetensors", "config.json")

    @classmethod
    def info(cls, spec: TeacherSpec) -> TeacherInfo:
        config = resolve_config(spec)
        check_options(cls.name, spec.options)
        return TeacherInfo(
            num_layers=config.depth,
            feature_dim=config.feature_dim,
            patch_grid=(config.grid, config.grid),
            image_size=(config.img_size, config.img_size),
        )

    @classmethod
    def build(cls, spec: TeacherSpec, heads: bool = False) -> FrozenVGGT:
        """Feature-only by default (the heads' weights are then never read); `heads=True` for previews."""
        from rocket_plugins.teachers.vggt.teacher import FrozenVGGT, build_model

        resize = check_options(cls.name, spec.options)
        model = build_model(spec, heads, cls.default_checkpoint, cls.weight_patterns)
        return FrozenVGGT(model, cls.info(spec), resize)

    @classmethod
    def preview(cls, spec: TeacherSpec, images: Sequence[Path], output: Path) -> None:
        """Inputs next to the predicted depth and confidence, one row per image."""
        from rocket_plugins.teachers.preview import load_images, render

        frames = load_images(list(images))
        pred = cls.build(spec, heads=True).predict(frames)
        source = spec.checkpoint or (f"preset {spec.preset} (random weights)" if spec.preset else cls.default_checkpoint)
        render(pred["images"][0], pred["depth"][0, ..., 0], pred["depth_conf"][0], output, f"{cls.name}: {source}")
