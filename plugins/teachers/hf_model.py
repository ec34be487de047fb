"""The built transformers teachers: a DINOv2 ViT's per-block patch tokens (DINOv2, Depth Anything's backbone)."""
from __future__ import annotations

from typing import Any, Collection

import torch
from transformers import PreTrainedModel

from rocket_core.contracts import TeacherInfo
from rocket_core.vision import normalize
from rocket_plugins.teachers.common import FrozenTeacher


class FrozenDinoFamily(FrozenTeacher):
    """A transformers model whose `vit` is a DINOv2 (embeddings + encoder.layer)."""

    def __init__(self, name: str, model: PreTrainedModel, vit: Any, info: TeacherInfo, resize: str) -> None:  # vit: dynamic
        super().__init__(name, info, vit.config.patch_size, resize)
        self.model = model
        self.vit = vit
        self.num_prefix = 1 + getattr(vit.config, "num_register_tokens", 0)

    def _patch_tokens(self, images: torch.Tensor, layers: Collection[int]) -> dict[int, torch.Tensor]:
        b, s = images.shape[:2]
        x = self.vit.embeddings(normalize(images).flatten(0, 1))
        out = {}
        for i, block in enumerate(self.vit.encoder.layer[: max(layers) + 1]):
            x = block(x)
            if i in layers:
                out[i] = x[:, self.num_prefix :].unflatten(0, (b, s))
        return out
