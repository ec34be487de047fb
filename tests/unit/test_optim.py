"""Learning-rate schedules of the paper recipes."""
from __future__ import annotations

import math

import pytest

from rocket_core.specs import TrainingSpec
from rocket_core.train.optim import build_optimizer, lr_factor


def test_multistep_matches_the_openvla_recipe() -> None:
    spec = TrainingSpec(schedule="multistep", milestones=[10000], gamma=0.1, max_steps=50005)
    assert [lr_factor(s, spec) for s in (0, 9999, 10000, 50004)] == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]


def test_cosine_with_warmup_matches_the_pi05_recipe() -> None:
    spec = TrainingSpec(schedule="cosine", learning_rate=2.5e-5, min_learning_rate=2.5e-6, warmup_steps=1000,
                        max_steps=30000)
    assert lr_factor(0, spec) == pytest.approx(1 / 1000)
    assert lr_factor(999, spec) == pytest.approx(1.0)
    assert lr_factor(1000, spec) == pytest.approx(1.0)
    mid = 1000 + (30000 - 1000) // 2
    assert lr_factor(mid, spec) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)), abs=1e-4)
    assert lr_factor(30000, spec) == pytest.approx(0.1)  # 2.5e-6 / 2.5e-5


def test_scheduler_drives_the_optimizer_lr() -> None:
    import torch

    spec = TrainingSpec(schedule="multistep", milestones=[2], gamma=0.5, learning_rate=1.0)
    opt, sched = build_optimizer([torch.nn.Parameter(torch.zeros(1))], spec)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == [1.0, 1.0, 0.5, 0.5]
