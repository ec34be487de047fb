"""The trainer with the teacher-feature cache (the `Trainer` change proposed to the trainer's owner, applied
here in a subclass): the same losses as the live teacher in fp32, and a second run that never calls it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader

from rocket_core.engine import plan_run
from rocket_core.specs import build_spec
from rocket_core.train.cache import TeacherCache
from rocket_core.train.trainer import Trainer
from tests.integration.train_toy import toy_registry


class CachedTrainer(Trainer):
    """Trainer + the proposed diff: a cache built from the plan, prefetching loader, cached `_targets`."""

    def __init__(self, plan: Any, run_dir: Path, cache_root: Path) -> None:
        super().__init__(plan, run_dir, progress=False)
        self.cache = TeacherCache.for_run(plan, self.dataset, cache_root, dtype="fp32")
        self.loader = DataLoader(self.dataset, batch_sampler=self.loader.batch_sampler,
                                 collate_fn=self.cache.collate, num_workers=0)

    def _targets(self, batch: dict[str, Any]) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        return self.cache.targets(batch, self.teacher)


class RaisingTeacher:
    def extract(self, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        raise AssertionError("the teacher was called")


def _losses(run_dir: Path) -> list[tuple[float, float]]:
    return [(r["action_loss"], r["align_loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def test_cached_training_matches_live_and_a_cached_rerun_never_calls_the_teacher(tmp_path: Path) -> None:
    spec = build_spec(None, {"vla": {"name": "toy-vla"}, "teacher": {"name": "toy-teacher"}, "projector": {"name": "rocket"},
                             "training": {"max_steps": 3, "batch_size": 2, "lora": {"rank": 4, "alpha": 4}},
                             "data": {"augment": {"enabled": False}}})
    plan = plan_run(spec, toy_registry())
    Trainer(plan, tmp_path / "live", progress=False).train()
    filling = CachedTrainer(plan, tmp_path / "fill", tmp_path / "cache")
    filling.train()
    assert filling.cache.layout.kind == "pooled"
    assert (filling.cache.stats.misses, filling.cache.stats.hits) == (6, 0)
    assert _losses(tmp_path / "fill") == _losses(tmp_path / "live")  # bit for bit

    rerun = CachedTrainer(plan, tmp_path / "rerun", tmp_path / "cache")
    rerun.teacher = RaisingTeacher()  # type: ignore[assignment]
    rerun.train()
    assert (rerun.cache.stats.hits, rerun.cache.stats.misses) == (6, 0)
    assert _losses(tmp_path / "rerun") == _losses(tmp_path / "live")
