"""Issue 20: a third-party projector strategy whose projector overrides `normed` trains end to end."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rocket_core.align.head as head_module
import tests.lowrank_projector as lowrank
from rocket_core.engine import plan_run
from rocket_core.train.trainer import Trainer
from tests.integration.train_toy import toy_registry, toy_spec


def test_a_strategy_overriding_normed_trains_two_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = toy_registry()
    reg.register_module(lowrank, "third-party test package")
    spec = toy_spec(2, 2, 0)
    spec = spec.model_copy(update={"projector": spec.projector.model_copy(update={"name": "lowrank"})})

    def refuse(*args: object) -> torch.Tensor:
        raise AssertionError("the fused nodes would bypass the plugin's normed")

    monkeypatch.setattr(head_module, "fused_ensemble_losses", refuse)
    trainer = Trainer(plan_run(spec, reg), tmp_path, progress=False)
    before = {n: p.detach().clone() for n, p in trainer.acc.unwrap_model(trainer.module).head.projector.named_parameters()}
    result = trainer.train()
    assert [r["step"] for r in result.history] == [1, 2]
    assert all(0 < r["align_loss"] < 2 for r in result.history)
    after = load_file(str(result.checkpoint / "projector.safetensors"))
    assert set(after) == set(before) and "0.0.down.weight" in after
    assert not torch.equal(after["0.0.down.weight"], before["0.0.down.weight"])  # the override's layer trains
