"""Teacher features for a batch, exactly as the alignment targets are made (trainer, profiling)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from rocket_core.contracts import Batch, TeacherModel


def teacher_features(teacher: TeacherModel, batch: Batch, layers: Sequence[int], num_images: int
                     ) -> dict[int, torch.Tensor]:
    """`teacher.extract` of `layers` on the teacher's view of the batch.

    VLA camera slots the batch leaves empty (masked out of the loss by the VLA's token mask) get zero
    features: feeding black frames instead would change the real frames' features through the teacher's
    cross-frame attention.
    """
    images = batch.get("teacher_images", batch["images"])
    feats = teacher.extract(images, sorted(set(layers)))
    missing = num_images - images.shape[1]
    if missing > 0:
        feats = {k: F.pad(v, (0, 0, 0, 0, 0, missing)) for k, v in feats.items()}
    return feats
