"""Plugin bugs are one line naming the plugin and the fix, in `rocket align` as in `rocket plugins check` (issue 20):
`info()` raising, `build()` returning None, and training set-ups where the trained parameters do nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

import rocket_core.registry as registry_module
import rocket_plugins.projectors.builtin as builtin_projectors
import tests.toy_plugins as toy
from rocket_core.contract_check import check_plugin
from rocket_core.contracts import Batch, VLAInfo
from rocket_core.registry import Registry
from rocket_core.specs import TrainingSpec, VLASpec
from tests.robustness.harness import assert_one_line_error, run_rocket


class KeyErrorInfo(toy.ToyVLA):
    name = "keyerror-info"

    @classmethod
    def info(cls, spec: VLASpec) -> VLAInfo:
        return {"cameras": 2}["num_images"]  # type: ignore[return-value]


class NoneBuild(toy.ToyVLA):
    name = "none-build"

    @classmethod
    def build(cls, spec: VLASpec) -> Any:
        return None


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    reg = Registry()
    reg.register_module(toy, "toy (tests.toy_plugins)")
    reg.register_module(builtin_projectors, "built-in (rocket_plugins.projectors.builtin)")
    for cls in (KeyErrorInfo, NoneBuild):
        reg._add("vla", cls, "buggy-dist (tests.unit.test_plugin_bugs)")
    monkeypatch.setattr(registry_module, "_CACHED", reg)
    return reg


@pytest.mark.parametrize("dry_run", [True, False])
def test_align_names_the_plugin_whose_info_raises(registry: Registry, tmp_path: Path, dry_run: bool) -> None:
    args = ["align", "--vla", "keyerror-info", "--teacher", "toy-teacher", *(["--dry-run"] if dry_run else [])]
    code, out = run_rocket(*args, cwd=tmp_path)
    assert_one_line_error(code, out, "vla plugin 'keyerror-info' info raised KeyError: 'num_images'")
    assert "from buggy-dist" in out and "rocket plugins check vla keyerror-info" in out


def test_align_names_the_plugin_whose_build_returns_none(registry: Registry, tmp_path: Path) -> None:
    code, out = run_rocket("align", "--vla", "none-build", "--teacher", "toy-teacher", "--max-steps", "1",
                           cwd=tmp_path)
    assert_one_line_error(code, out, "vla plugin 'none-build' build() returned None")
    assert not (tmp_path / "runs").exists()


def test_plugins_check_says_the_same(registry: Registry) -> None:
    code, out = run_rocket("plugins", "check", "vla", "keyerror-info")
    assert_one_line_error(code, out, "info raised KeyError: 'num_images'")


# ---- trainable parameters that do nothing ------------------------------------------------------------------


class FrozenModel(toy.ToyVLAModel):
    def configure_training(self, training: TrainingSpec) -> None:
        self.requires_grad_(False)


class NoConfigureModel(toy.ToyVLAModel):
    def configure_training(self, training: TrainingSpec) -> None:
        """Forgot to freeze anything: the whole model trains although LoRA was asked for."""


class UnfrozenLoraModel(toy.ToyVLAModel):
    def configure_training(self, training: TrainingSpec) -> None:
        super().configure_training(training)
        self.requires_grad_(True)


class FastPathModel(toy.ToyVLAModel):
    """LoRA on an nn.TransformerEncoderLayer: in eval without grad its fast path reads the base weights."""

    def __init__(self, info: VLAInfo) -> None:
        super().__init__(info)
        self.mixer = nn.TransformerEncoderLayer(info.hidden_size, 2, 64, dropout=0.0, batch_first=True)

    def configure_training(self, training: TrainingSpec) -> None:
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=["linear1", "linear2"],
                                           init_lora_weights="gaussian"), self)
        for name, param in self.named_parameters():
            param.requires_grad = "lora_" in name or name.startswith("action_head")

    def _forward(self, batch: Batch) -> tuple[list[torch.Tensor], torch.Tensor]:
        states, _ = super()._forward(batch)
        return states, self.action_head(self.mixer(states[-1]).mean(1))


def _vla(model_cls: type[toy.ToyVLAModel]) -> type[toy.ToyVLA]:
    class Adapter(toy.ToyVLA):
        @classmethod
        def build(cls, spec: VLASpec) -> Any:
            return model_cls(cls.info(spec))

    Adapter.name = model_cls.__name__
    return Adapter


@pytest.mark.parametrize("model_cls,fragment", [
    (FrozenModel, "configure_training: no parameter has requires_grad"),
    (NoConfigureModel, "configure_training: every parameter"),
    (UnfrozenLoraModel, "configure_training: every parameter"),
    (FastPathModel, "predict_action: changing the trainable LoRA adapter parameters does not change its output"),
])
def test_plugins_check_fails_when_training_changes_nothing(model_cls: type[toy.ToyVLAModel], fragment: str) -> None:
    problems = check_plugin("vla", _vla(model_cls))
    assert problems and fragment in problems[0], problems


def test_the_toy_vla_trains_what_it_uses() -> None:
    assert check_plugin("vla", toy.ToyVLA) == []
