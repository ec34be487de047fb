"""AdamW and the paper's learning-rate schedules as one LambdaLR (its state is just the step)."""
from __future__ import annotations

import bisect
import math
from typing import Iterable

import torch

from rocket_core.specs import TrainingSpec


def lr_factor(step: int, spec: TrainingSpec) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based)."""
    if spec.warmup_steps and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.schedule == "multistep":
        return spec.gamma ** bisect.bisect_right(sorted(spec.milestones), step)
    if spec.schedule == "cosine":
        span = max(1, spec.max_steps - spec.warmup_steps)
        progress = min(1.0, (step - spec.warmup_steps) / span)
        floor = spec.min_learning_rate / spec.learning_rate
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def build_optimizer(
    params: Iterable[torch.nn.Parameter], spec: TrainingSpec
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(
        list(params), lr=spec.learning_rate, betas=spec.betas, weight_decay=spec.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, spec))
    return optimizer, scheduler
