"""What every built-in teacher shares: option checking and the frozen `extract` wrapper.

A teacher subclass only says how to compute the patch tokens of some layers from its preprocessed
input (`_patch_tokens`); freezing, resizing, layer validation, early exit and autocast live here once.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Collection, Sequence

import torch
from torch import nn

from rocket_core.contracts import TeacherInfo
from rocket_core.errors import RocketError
from rocket_core.vision import resize_for_teacher


class FrozenTeacher(nn.Module, ABC):
    """A built teacher: always in eval mode, no gradients; bf16 autocast on CUDA only."""

    def __init__(self, name: str, info: TeacherInfo, patch_size: int, resize: str) -> None:
        super().__init__()
        self.name = name
        self.info = info
        self.patch_size = patch_size
        self.resize = resize

    def train(self, mode: bool = True) -> FrozenTeacher:
        """A teacher never leaves eval mode: a trainer's `.train()` must not switch it."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, S, 3, H, W) in [0, 1] at any size -> the teacher's input size, on its device, float32."""
        if images.ndim != 5 or images.shape[2] != 3:
            raise RocketError(f"teacher images must be (B, S, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        device = next(self.parameters()).device
        images = images.to(device=device, dtype=torch.float32)
        return resize_for_teacher(images, self.info.image_size[1], self.patch_size, self.resize)  # type: ignore[arg-type]  # resize: a ResizeMode string

    @staticmethod
    def autocast(device: torch.device) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    @abstractmethod
    def _patch_tokens(self, images: torch.Tensor, layers: Collection[int]) -> dict[int, torch.Tensor]:
        """{layer: (B, S, P, C)} for non-negative `layers`, computing no block past the deepest one."""

    @torch.no_grad()
    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """{layer: (B, S, P, C)} float32 patch tokens of the requested layers (`-1` = last), keyed as asked."""
        depth = self.info.num_layers
        if not layers:
            raise RocketError(f"teacher '{self.name}': extract needs at least one layer")
        bad = [layer for layer in layers if not -depth <= layer < depth]
        if bad:
            raise RocketError(
                f"teacher '{self.name}' layer(s) {bad} out of range: valid layers are 0..{depth - 1} (or -1 for {depth - 1})"
            )
        x = self.preprocess(images)
        with self.autocast(x.device):
            feats = self._patch_tokens(x, {layer % depth for layer in layers})
        return {layer: feats[layer % depth].float() for layer in layers}
