"""The paper recipes carry the reference's settings, and `rocket align --dry-run` shows them."""
from __future__ import annotations

import torch
from typer.testing import CliRunner

from rocket_cli.main import app
from rocket_core.recipes import load_recipe


def _dry_run(recipe: str) -> str:
    result = CliRunner().invoke(app, ["align", "--recipe", recipe, "--dry-run"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_openvla_recipes_match_the_reference() -> None:
    out = _dry_run("openvla-libero-rocket")
    assert "'lora_scope': 'all-linear'" in out and "'proprio_fp32': True" in out
    assert "weight decay 0.01" in out and "augment crop (0.9, 0.9)" in out
    for name in ("baseline", "naive", "shared", "spatial-forcing"):
        spec = load_recipe(f"openvla-libero-{name}").spec
        assert spec["vla"]["options"]["lora_scope"] == "all-linear" and spec["training"]["weight_decay"] == 0.01
        assert spec["data"]["dataset"] == "physical-intelligence/libero"


def test_pi05_libero_recipe_matches_the_reference() -> None:
    out = _dry_run("pi05-libero-rocket")
    assert "action chunk 10" in out and "'discrete_state_input': False" in out
    assert "augment crop (1.0, 1.0)" in out and "teacher view pre_color_jitter" in out
    assert load_recipe("pi0-robotwin-rocket").spec["training"]["ema_decay"] == 0.99


def test_pi05_without_state_input_prompts_the_task_only() -> None:
    from rocket_core.specs import VLASpec
    from rocket_plugins.vla.pi05 import Pi05Adapter

    batch = {"task": ["pick_up the\nbowl"], "state": torch.zeros(1, 8)}
    with_state = Pi05Adapter.build(VLASpec(name="pi05", preset="tiny")).prompts(batch)[0]
    without = Pi05Adapter.build(VLASpec(name="pi05", preset="tiny", options={"discrete_state_input": False}))
    assert "State:" in with_state and without.prompts(batch) == ["pick up the bowl\n"]


def test_openvla_proprio_projector_can_stay_fp32_in_a_bf16_model() -> None:
    from rocket_core.specs import VLASpec
    from rocket_plugins.vla.openvla.adapter import OpenVLAAdapter

    torch.manual_seed(0)
    spec = VLASpec(name="openvla", preset="tiny", options={"dtype": "bfloat16", "proprio_fp32": True})
    model = OpenVLAAdapter.build(spec)
    assert model.proprio_projector.fc1.weight.dtype == torch.float32
    assert model.action_head is not None and next(model.action_head.parameters()).dtype == torch.bfloat16
    actions = model.predict_observation(torch.rand(2, 3, 56, 56), "go", torch.zeros(8), unnormalize=False)
    assert actions.shape == (8, 7)
