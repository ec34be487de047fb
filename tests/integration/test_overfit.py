"""Overfit checks (issue 21): each built-in VLA at its tiny preset, with the default training settings and
no alignment, must fit a few frames under LoRA and in full: the first 32 frames of the bundled dataset's
episode 0, and (LoRA) the 22 frames of the LeRobot v2.1 fixture, whose action and state sizes are read
from the fixture and handed to the VLA's options where the preset cannot take them from the data.

Fewer steps than the 800 of the acceptance (docs/data.md). Measured at these steps with the defaults:
bundled, OpenVLA L1 0.04-0.05 (the defaults before issue 21, batch 2 and Llama init std 0.02, gave 0.15);
pi0's flow loss 0.28-0.30 of its start, pi0.5's about 0.2. v2.1 fixture: OpenVLA 0.175 (batch 2 gave
0.23), pi0 0.20 of its start, pi0.5 0.15. A model that does not learn stays near 1.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rocket_core.engine import plan_run
from rocket_core.specs import build_spec
from rocket_core.train.trainer import Trainer
from tests.conftest import SHARED_FIXTURES, fixture_dir, needs_fixture

# vla -> (steps, bound): OFT's L1 must fall below `bound` in absolute terms; flow matching's loss (noisy
# in t and noise) below `bound` times its start. Means of the first / last 5 records, as the acceptance.
CASES = {"openvla": (200, 0.1), "pi0": (300, 0.5), "pi05": (300, 0.5)}
# The v2.1 fixture's gripper alternates -1/+1 frame by frame, which the tiny OpenVLA does not resolve
# (docs/data.md), so its L1 bound sits above that dimension's share (1/7) and below the batch-2 value.
FIXTURE_CASES = {"openvla": (200, 0.2), "pi0": (300, 0.5), "pi05": (300, 0.5)}
V2 = fixture_dir("ROCKET_LEROBOT_V2_FIXTURE", SHARED_FIXTURES / "lerobot-v2")
V2_DATASET = V2 / "v2.1-image" / "dataset"


def _fit(vla: str, options: dict[str, Any], data: dict[str, Any], finetune: str, steps: int, bound: float,
         run_dir: Path) -> None:
    """Train without alignment and assert the acceptance's end-of-run loss (see CASES)."""
    spec = build_spec(overrides={
        "vla": {"name": vla, "preset": "tiny", "options": options},
        "teacher": {"name": "vggt", "preset": "tiny"},
        "projector": {"name": "rocket"},
        "alignment": {"coefficient": 0},
        "data": data,
        "training": {"max_steps": steps, "finetune": finetune},
    })
    losses = [r["action_loss"] for r in Trainer(plan_run(spec), run_dir, progress=False, checkpoint_minutes=0).train().history]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    if vla == "openvla":
        assert last < bound, f"L1 {first:.3f} -> {last:.3f} after {steps} steps"
    else:
        assert last < bound * first, f"flow loss {first:.3f} -> {last:.3f} after {steps} steps"


@pytest.mark.slow
@pytest.mark.parametrize("finetune", ["lora", "full"])
@pytest.mark.parametrize("vla", sorted(CASES))
def test_tiny_vla_overfits_32_frames(vla: str, finetune: str, tmp_path: Path) -> None:
    _fit(vla, {}, {"episodes": [0], "max_frames": 32}, finetune, *CASES[vla], tmp_path / "run")


def _fixture_options(vla: str) -> dict[str, Any]:
    """The fixture's state and action sizes as OpenVLA options (pi0 / pi0.5 take any size up to their maximum)."""
    features = json.loads((V2_DATASET / "meta/info.json").read_text())["features"]
    state, action = (next(features[k]["shape"][0] for k in keys if k in features)
                     for keys in (("observation.state", "state"), ("action", "actions")))
    return {"action_dim": action, "proprio_dim": state} if vla == "openvla" else {}


@pytest.mark.slow
@needs_fixture(V2_DATASET, "ROCKET_LEROBOT_V2_FIXTURE")
@pytest.mark.parametrize("vla", sorted(FIXTURE_CASES))
def test_tiny_vla_overfits_lerobot_v2_fixture(vla: str, tmp_path: Path) -> None:
    _fit(vla, _fixture_options(vla), {"dataset": str(V2_DATASET), "max_frames": 32}, "lora", *FIXTURE_CASES[vla],
         tmp_path / "run")
