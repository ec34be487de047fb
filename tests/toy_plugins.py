"""A complete minimal plugin set for the tests: one toy VLA and one toy teacher (docs/plugins.md has the guide).

Registered in tests with `Registry.register_module(tests.toy_plugins)`; a third-party package would
instead declare `[project.entry-points.rocket] toy = "my_package.toy_plugins"`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rocket_core import hookimpl
from rocket_core.contracts import (
    Batch,
    TeacherAdapter,
    TeacherInfo,
    TeacherModel,
    VLAAdapter,
    VLAInfo,
    VLAModel,
    VLAOutput,
)
from rocket_core.specs import TeacherSpec, TrainingSpec, VLASpec


class _Blocks(nn.Module):
    """Patchify, then residual MLP blocks; returns every hidden state (0 = embeddings)."""

    def __init__(self, depth: int, width: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Conv2d(3, width, patch, stride=patch)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
                                    for _ in range(depth))

    def forward(self, images: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        b, s = images.shape[:2]
        x = self.embed(images.flatten(0, 1)).flatten(2).transpose(1, 2)  # (B*S, P, width)
        states = [x]
        for block in self.blocks[:upto]:
            x = x + block(x)
            states.append(x)
        return [h.reshape(b, s * h.shape[1], h.shape[2]) for h in states]


class ToyVLAModel(nn.Module):
    def __init__(self, info: VLAInfo, action_dim: int = 7) -> None:
        super().__init__()
        self.info = info
        self.body = _Blocks(info.num_blocks, info.hidden_size, patch=8)
        self.action_head = nn.Linear(info.hidden_size, action_dim)

    def configure_training(self, training: TrainingSpec) -> None:
        """LoRA on the block linears (peft) plus the action head in full, or everything in full."""
        if training.finetune == "full":
            self.requires_grad_(True)
            return
        from peft import LoraConfig, inject_adapter_in_model

        lora = training.lora
        config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=r"body\.blocks\.\d+\.1", init_lora_weights="gaussian")
        inject_adapter_in_model(config, self)
        for name, param in self.named_parameters():
            param.requires_grad = "lora_" in name or name.startswith("action_head")

    def _forward(self, batch: Batch) -> tuple[list[torch.Tensor], torch.Tensor]:
        images = batch["images"]
        small = F.interpolate(images.flatten(0, 1), size=(32, 32), mode="bilinear", align_corners=False)
        states = self.body(small.reshape(*images.shape[:3], 32, 32))
        return states, self.action_head(states[-1].mean(1))

    def forward_align(self, batch: Batch, layers: Sequence[int]) -> VLAOutput:
        states, pred = self._forward(batch)
        loss = F.l1_loss(pred, batch["actions"][:, 0])
        return VLAOutput(loss, {k: states[k] for k in layers}, None)

    def predict_action(self, batch: Batch) -> torch.Tensor:
        """One predicted action, repeated over the chunk."""
        return self._forward(batch)[1][:, None].expand(-1, self.info.chunk_size or 1, -1)


class ToyVLA(VLAAdapter):
    name = "toy-vla"
    description = "A 4-block patch MLP that predicts one action (test and documentation example)"
    version = "1.0"

    @classmethod
    def info(cls, spec: VLASpec) -> VLAInfo:
        cams, tokens_per_cam = spec.options.get("cameras", 2), 16  # 32x32 images, patch 8
        return VLAInfo(num_blocks=4, hidden_size=32, num_vision_tokens=cams * tokens_per_cam, max_layer_index=4,
                       num_images=cams, default_layers=((1, 2, 4), (0, 1, -1)), chunk_size=4, action_dim=7,
                       state_dim=8)

    @classmethod
    def build(cls, spec: VLASpec) -> VLAModel:
        return ToyVLAModel(cls.info(spec))


class ToyTeacherModel(nn.Module):
    def __init__(self, info: TeacherInfo) -> None:
        super().__init__()
        self.info = info
        self.body = _Blocks(info.num_layers, info.feature_dim, patch=4)
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        b, s = images.shape[:2]
        x = F.interpolate(images.flatten(0, 1), size=self.info.image_size, mode="bilinear", align_corners=False)
        states = self.body(x.reshape(b, s, *x.shape[1:]), upto=max(layers) + 1)
        return {k: states[k + 1].reshape(b, s, -1, self.info.feature_dim) for k in layers}


class ToyTeacher(TeacherAdapter):
    name = "toy-teacher"
    description = "A 3-layer frozen patch MLP (test and documentation example)"
    version = "1.0"

    @classmethod
    def info(cls, spec: TeacherSpec) -> TeacherInfo:
        return TeacherInfo(num_layers=3, feature_dim=16, patch_grid=(6, 6), image_size=(24, 24))

    @classmethod
    def build(cls, spec: TeacherSpec) -> TeacherModel:
        return ToyTeacherModel(cls.info(spec))


@hookimpl
def register_vlas(register) -> None:  # type: ignore[no-untyped-def]
    register(ToyVLA)


@hookimpl
def register_teachers(register) -> None:  # type: ignore[no-untyped-def]
    register(ToyTeacher)
