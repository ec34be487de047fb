"""The built VGGT teacher: strict checkpoint loading and frozen extraction (the adapter is in `adapter`).

Layer index i is the i-th frame/global block pair; its tokens are cat(frame out, global out), so the
feature width is 2 * embed_dim. `-1` is the last layer (ordinary Python indexing, as in ROCKET).
"""
from __future__ import annotations

from typing import Any, Collection, Sequence

import torch

from rocket_core.contracts import TeacherInfo
from rocket_core.errors import RocketError
from rocket_core.hub import check_keys, find_weights_file, load_state_dict, resolve_weights
from rocket_core.specs import TeacherSpec
from rocket_plugins.teachers.common import FrozenTeacher
from rocket_plugins.teachers.vggt.adapter import resolve_config
from rocket_plugins.teachers.vggt.model import VGGT

HEAD_PREFIXES: tuple[str, ...] = ("camera_head.", "depth_head.", "point_head.", "track_head.")


def load_checkpoint(model: VGGT, state: dict[str, torch.Tensor], source: str) -> None:
    """Load strictly, except for the keys of heads the model does not have.

    The reference loads with strict=False, which would also hide a missing or mis-shaped aggregator key
    and give a silently half-random teacher; here those fail with the key names.
    """
    expected = model.state_dict()
    absent = tuple(p for p in HEAD_PREFIXES if not any(k.startswith(p) for k in expected))
    check_keys({k: v.shape for k, v in expected.items()}, {k: v.shape for k, v in state.items()},
               f"VGGT checkpoint '{source}'", ignore=lambda key: key.startswith(absent),
               hint="use a matching preset/config or the official checkpoint")
    # float32 whatever the file's dtype; `assign` takes the tensors over (no second copy of a 5 GB model).
    model.load_state_dict({k: state[k].float() for k in expected}, assign=True)


def build_model(spec: TeacherSpec, heads: bool, default_checkpoint: str, weight_patterns: Sequence[str]) -> VGGT:
    """A VGGT in eval mode: random (seeded) for a preset without checkpoint, else with loaded weights."""
    config = resolve_config(spec)
    checkpoint = spec.checkpoint or (None if spec.preset else default_checkpoint)
    with torch.device("meta" if checkpoint else "cpu"), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a preset without weights is the same teacher in every process
        model = VGGT(config, heads=heads)
    if checkpoint:
        folder = resolve_weights(checkpoint, spec.revision, weight_patterns, pull_name="vggt" if checkpoint == default_checkpoint else None)
        weights = find_weights_file(folder)
        load_checkpoint(model, load_state_dict(weights), str(weights))
    return model.eval().requires_grad_(False)


class FrozenVGGT(FrozenTeacher):
    """The built VGGT teacher; `predict` runs the heads too (for previews), when they were built."""

    def __init__(self, model: VGGT, info: TeacherInfo, resize: str) -> None:
        super().__init__("vggt", info, model.config.patch_size, resize)
        self.model = model

    def _patch_tokens(self, images: torch.Tensor, layers: Collection[int]) -> dict[int, torch.Tensor]:
        start = self.model.config.patch_start_idx
        return {i: f[:, :, start:] for i, f in self.model.aggregator(images, layers).items()}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> dict[str, Any]:
        """Full forward with the heads (depth, confidence, points, cameras) on the preprocessed images."""
        if self.model.depth_head is None:
            raise RocketError("this VGGT teacher was built without heads; build it with heads=True to predict depth")
        x = self.preprocess(images)
        with self.autocast(x.device):
            out = self.model(x)
        return {"images": x, **out}
